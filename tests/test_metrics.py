"""Metrics against hand-computed values, including the fairness definitions in the docs."""

from __future__ import annotations

import io

import numpy as np
import pytest

from peft_ser.evaluation.metrics import (
    classification_metrics,
    confusion_figure,
    fold_title,
    learning_curves_figure,
    summarize,
    uar,
    uar_interval,
)

LABELS = ["Neutral", "Angry", "Sad"]


def test_uar_averages_recall_over_present_classes() -> None:
    # recalls: class 0 → 1/2, class 1 → 1/1; class 2 absent from the truth is not counted
    assert uar([0, 0, 1], [0, 2, 1]) == pytest.approx(0.75)
    assert uar([], []) == 0.0


def test_classification_metrics_match_hand_counts() -> None:
    truth = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 2, 2]
    result = classification_metrics(truth, pred, LABELS)
    assert result["n"] == 6
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["uar"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert result["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    f1 = [2 * 2 / (2 * 2 + 1), 2 * 1 / (2 * 1 + 1 + 1), 2 * 1 / (2 * 1 + 1)]
    assert result["macro_f1"] == pytest.approx(np.mean(f1))
    assert result["recall"] == pytest.approx({"Neutral": 2 / 3, "Angry": 0.5, "Sad": 1.0})
    assert "uar_F" not in result


def test_fairness_differences_follow_their_definitions() -> None:
    truth = [0, 1, 0, 1, 0, 1]
    pred = [0, 1, 0, 0, 0, 0]
    genders = ["F", "F", "M", "M", "M", "U"]
    result = classification_metrics(truth, pred, LABELS[:2], genders)
    assert result["uar_F"] == pytest.approx(1.0)
    assert result["uar_M"] == pytest.approx(0.5)  # class 0: 2/2, class 1: 0/1
    assert result["uar_gap"] == pytest.approx(0.5)
    # P(ŷ=0|F) = 1/2, P(ŷ=0|M) = 3/3 → −1/2 ; P(ŷ=1|F) − P(ŷ=1|M) = 1/2 − 0
    assert result["parity_by_class"] == pytest.approx({"Neutral": -0.5, "Angry": 0.5})
    assert result["statistical_parity_difference"] == pytest.approx(0.5)
    # recall gaps: class 0 → 1 − 1 = 0, class 1 → 1 − 0 = 1
    assert result["opportunity_by_class"] == pytest.approx({"Neutral": 0.0, "Angry": 1.0})
    assert result["equal_opportunity_difference"] == pytest.approx(1.0)


def test_fairness_needs_both_genders() -> None:
    result = classification_metrics([0, 1], [0, 1], LABELS[:2], ["F", "U"])
    assert "uar_gap" not in result


def test_summarize_gives_mean_and_population_std() -> None:
    summary = summarize([{"uar": 0.5, "accuracy": 0.6}, {"uar": 0.7, "accuracy": 0.6}])
    assert summary["uar"] == pytest.approx({"mean": 0.6, "std": 0.1})
    assert summary["accuracy"]["std"] == pytest.approx(0.0)
    assert "uar_gap" not in summary


def test_figures_render_to_png() -> None:
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "dev_loss": 1.2 / e, "train_uar": 0.3, "dev_uar": 0.4}
        for e in (1, 2, 3)
    ]
    for figure in (
        confusion_figure([[3, 1], [0, 2]], LABELS[:2], "fold 1"),
        learning_curves_figure(history, "fold 1"),
    ):
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        assert buffer.getvalue().startswith(b"\x89PNG")


def test_figures_say_their_fold_and_score_and_mark_the_tested_epoch() -> None:
    confusion = confusion_figure([[3, 1, 0], [0, 2, 0], [0, 0, 0]], LABELS[:3], "fold1 (test)")
    assert confusion.axes[0].get_title() == "fold1 (test): UAR 0.875"  # (3/4 + 2/2) / 2
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "dev_loss": 1.2 / e, "train_uar": 0.3, "dev_uar": d}
        for e, d in ((1, 0.4), (2, 0.6), (3, 0.5))
    ]
    loss, scores = learning_curves_figure(history, fold_title("fold1"), tested=2).axes
    assert scores.get_title() == "fold1: dev UAR 0.600 at the tested epoch 2"
    for axes in (loss, scores):
        assert [line.get_xdata()[0] for line in axes.lines if line.get_label() == "tested"] == [2]
        axes.figure.canvas.draw()
        ticks = [tick for tick in axes.get_xticks() if 1 <= tick <= 3]
        assert ticks == [1, 2, 3]  # whole epochs only
    assert fold_title("3") == "fold 3" and fold_title("Fold2") == "Fold2"


def test_uar_interval_covers_the_uar_and_narrows_with_more_items() -> None:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, size=32)
    pred = np.where(rng.random(32) < 0.7, truth, (truth + 1) % 4)
    low, high = uar_interval(truth, pred)
    assert low < uar(truth, pred) < high
    big_truth, big_pred = np.tile(truth, 30), np.tile(pred, 30)
    big_low, big_high = uar_interval(big_truth, big_pred)
    assert big_high - big_low < (high - low) / 3  # width shrinks about as 1/sqrt(n)
    assert uar_interval(truth, pred) == (low, high)  # reproducible from its seed
    assert uar_interval(truth, truth) == (1.0, 1.0)
    assert "uar_ci95" in classification_metrics(truth, pred, list("abcd"), interval=True)
