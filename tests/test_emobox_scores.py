"""EmoBox's WA / UA / macro-F1 on a hand-computed example: per fold as its
``ComputePerformance`` scores (emo-box/EmoBox ``EmoBox/EmoEval.py``: scikit-learn's
``accuracy_score``, ``balanced_accuracy_score``, ``f1_score(average="macro")``), then the mean
of the folds; in the run summary and the sweep report's leaderboard table."""

from __future__ import annotations

import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from peft_ser.evaluation.metrics import classification_metrics, emobox_line, emobox_scores
from peft_ser.sweep.report import Entry, _emobox_text

LABELS = ["Neutral", "Angry", "Sad"]
FOLDS = [
    ([0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 0, 2]),
    ([0, 1, 1, 1], [1, 1, 1, 1]),
]
# by hand: fold 1 WA 4/6; recalls 2/3, 1/2, 1 → UA 13/18; F1s 2/3, 1/2, 1 → 13/18
#          fold 2 WA 3/4; recalls 0, 1 → UA 1/2; F1s 0 (never predicted), 6/7 → 3/7
HAND = {"WA": (4 / 6 + 3 / 4) / 2, "UA": (13 / 18 + 1 / 2) / 2, "macro-F1": (13 / 18 + 3 / 7) / 2}


def _folds() -> list[dict]:
    return [classification_metrics(truth, pred, LABELS) for truth, pred in FOLDS]


def test_scores_match_the_hand_computed_example():
    scores = emobox_scores(_folds())
    assert scores == pytest.approx({name: 100 * value for name, value in HAND.items()})


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
def test_each_fold_scores_as_emobox_scores_it():
    for (truth, pred), fold in zip(FOLDS, _folds(), strict=True):
        assert fold["accuracy"] == pytest.approx(accuracy_score(truth, pred))
        assert fold["uar"] == pytest.approx(balanced_accuracy_score(truth, pred))
        assert fold["macro_f1"] == pytest.approx(f1_score(truth, pred, average="macro"))


def test_summary_line_and_report_cell():
    assert emobox_line(_folds()) == (
        "EmoBox WA / UA / macro-F1 (%, mean of 2 folds): 70.83 / 61.11 / 57.54"
    )
    entry = Entry(folds_done=2, folds_expected=2, tests=_folds())
    assert _emobox_text(entry) == "70.83 / 61.11 / 57.54"
    assert _emobox_text(Entry(folds_done=1, folds_expected=2)) == "incomplete: 1/2 folds"
