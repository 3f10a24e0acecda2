"""The distribution task: vote shares as targets, the KL loss, JSD and KLD against hand-computed
values and their properties, the lower-is-better selection, refusals, and training end to end
on a corpus whose annotators disagree in a known way (`peft_ser.demo.disagreement`)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from _tones import make_corpus, tiny_run
from hypothesis import given, settings
from hypothesis import strategies as st

from peft_ser.config import ConfigError, ModelConfig, load_run_config
from peft_ser.data.manifest import PAPER4, PreparedCorpus, read_prepared
from peft_ser.data.states import FeatureCache
from peft_ser.demo.disagreement import shares_at, write_disagreement_corpus
from peft_ser.evaluation.evaluate import evaluate
from peft_ser.evaluation.metrics import distribution_metrics, jensen_shannon
from peft_ser.evaluation.objectives import improves
from peft_ser.evaluation.results import BadAudioLog
from peft_ser.export.onnx import export_onnx
from peft_ser.inference.predict import predict
from peft_ser.models.ser_model import SERModel, build_model
from peft_ser.models.tasks import (
    TaskError,
    distribution_loss,
    kl_divergence,
    resolve_task,
    shape_targets,
    usable,
    vote_shares,
    weighted_cross_entropy,
)
from peft_ser.training.loop import FoldRunner
from peft_ser.training.run import train
from peft_ser.training.schedule import early_stop
from peft_ser.utils.precision import accelerator_for

LN2 = math.log(2)


def test_vote_shares_drop_other_and_refuse_no_in_set_weight() -> None:
    labels = ["Neutral", "Angry", "Sad"]
    assert vote_shares({"Neutral": 2.0, "Sad": 1.0, "other": 3.0}, labels) == [2 / 3, 0, 1 / 3]
    assert vote_shares({"Neutral": 0.0, "other": 2.0}, labels) is None
    assert vote_shares(None, labels) is None


def test_divergences_of_hand_computed_distributions() -> None:
    # disjoint: JSD = ln 2; one-hot against uniform: m = (3/4, 1/4), KL(p‖m) = ln(4/3),
    # KL(q‖m) = ½ ln(2/3) + ½ ln 2 = ½ ln(4/3), so JSD = ¾ ln(4/3)
    p = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.3, 0.7]])
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5], [0.3, 0.7]])
    got = jensen_shannon(p, q).tolist()
    assert got == pytest.approx([LN2, 0.75 * math.log(4 / 3), 0.0], abs=1e-12)
    # softmax(0, ln 3) = (1/4, 3/4); KL((½, ½) ‖ (¼, ¾)) = ½ ln 2 + ½ ln(2/3) = ½ ln(4/3)
    logits = torch.tensor([[0.0, math.log(3)]], dtype=torch.float64)
    target = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    assert float(kl_divergence(logits, target)[0]) == pytest.approx(0.5 * math.log(4 / 3))
    metrics = distribution_metrics(target, logits)
    jsd = 0.5 * (0.5 * math.log(0.5 / 0.375) + 0.5 * math.log(0.5 / 0.625))
    jsd += 0.5 * (0.25 * math.log(0.25 / 0.375) + 0.75 * math.log(0.75 / 0.625))
    assert metrics == pytest.approx({"jsd": jsd, "kld": 0.5 * math.log(4 / 3)})
    empty = distribution_metrics(torch.zeros(0, 2), torch.zeros(0, 2))
    assert all(math.isnan(value) for value in empty.values())


def test_the_loss_weighs_items_by_their_expected_class_weight() -> None:
    logits = torch.tensor([[0.0, math.log(3)], [0.0, 0.0]], dtype=torch.float64)
    targets = torch.tensor([[0.5, 0.5], [1.0, 0.0]], dtype=torch.float64)
    weights = torch.tensor([2.0, 1.0], dtype=torch.float64)
    # item weights 1.5 and 2; losses ½ ln(4/3) and ln 2
    items = distribution_loss(logits, targets, weights, reduction="none")
    assert items.tolist() == pytest.approx([1.5 * 0.5 * math.log(4 / 3), 2 * LN2])
    mean = float(distribution_loss(logits, targets, weights))
    assert mean == pytest.approx((0.75 * math.log(4 / 3) + 2 * LN2) / 3.5)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_on_one_hot_targets_the_loss_is_the_weighted_cross_entropy(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 4, (6,), generator=generator)
    weights = torch.rand(4, generator=generator, dtype=torch.float64) + 0.1
    one_hot = torch.nn.functional.one_hot(labels, 4).double()
    assert float(distribution_loss(logits, one_hot, weights)) == pytest.approx(
        float(weighted_cross_entropy(logits, labels, weights)), rel=1e-12
    )


def test_targets_sharpen_smooth_and_keep_unvoted_labels_at_zero() -> None:
    shares = torch.tensor([[0.75, 0.25, 0.0, 0.0]], dtype=torch.float64)
    # squares 0.5625 and 0.0625 over their sum 0.625
    assert shape_targets(shares, 0.5, 0.0).tolist()[0] == pytest.approx([0.9, 0.1, 0, 0])
    flatter = shape_targets(shares, 2.0, 0.0).tolist()[0]
    assert flatter[0] == pytest.approx(math.sqrt(3) / (math.sqrt(3) + 1)) and flatter[2] == 0
    smoothed = shape_targets(torch.tensor([[1.0, 0, 0, 0]]), 1.0, 0.2).tolist()[0]
    assert smoothed == pytest.approx([0.85, 0.05, 0.05, 0.05])
    assert torch.equal(shape_targets(shares, 1.0, 0.0), shares)
    tiny = shape_targets(torch.tensor([[0.6, 0.4]]), 0.1, 0.0)  # (2/3)^10: no underflow
    assert torch.isfinite(tiny).all() and float(tiny.sum()) == pytest.approx(1.0)


DISTRIBUTIONS = st.lists(st.floats(0, 1), min_size=3, max_size=3).filter(lambda w: sum(w) > 1e-3)


@settings(max_examples=300, deadline=None)
@given(DISTRIBUTIONS, DISTRIBUTIONS)
def test_jsd_is_symmetric_bounded_and_zero_only_for_equal_distributions(a, b) -> None:
    p = torch.tensor([a], dtype=torch.float64) / sum(a)
    q = torch.tensor([b], dtype=torch.float64) / sum(b)
    forward, backward = float(jensen_shannon(p, q)[0]), float(jensen_shannon(q, p)[0])
    assert forward == pytest.approx(backward, abs=1e-15)
    assert 0.0 <= forward <= LN2 + 1e-12
    assert float(jensen_shannon(p, p)[0]) == 0.0
    if float((p - q).abs().max()) > 1e-3:
        assert forward > 0.0


@settings(max_examples=100, deadline=None)
@given(DISTRIBUTIONS)
def test_kld_of_the_target_itself_is_zero(a) -> None:
    p = torch.tensor([a], dtype=torch.float64) / sum(a)
    logits = torch.log(p.clamp_min(1e-300))
    assert float(kl_divergence(logits, p)[0]) == pytest.approx(0.0, abs=1e-9)


def test_divergences_select_the_lowest_dev_score_and_stop_on_it() -> None:
    assert improves("jsd", 0.1, 0.2) and not improves("jsd", 0.3, 0.2)
    assert improves("uar", 0.3, 0.2) and not improves("uar", 0.1, 0.2)
    assert improves("jsd", 0.5, None) and not improves("jsd", math.nan, None)
    assert improves("jsd", 0.5, math.nan)  # a best without a score is no best
    history = [{"epoch": e, "dev_jsd": v} for e, v in enumerate([0.3, 0.1, 0.2, 0.25], 1)]
    assert early_stop(history, "jsd", 2) == (
        "dev JSD did not improve for 2 epochs after its best (0.100 at epoch 2)"
    )
    assert early_stop(history, "jsd", 3) is None


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("optim.distribution_temperature", math.nan),
        ("optim.distribution_temperature", 0),
        ("optim.distribution_temperature", -1),
        ("optim.distribution_temperature", 1e9),
        ("optim.distribution_smoothing", 1.0),
        ("optim.distribution_smoothing", -0.1),
        ("optim.distribution_smoothing", math.inf),
    ],
)
def test_absurd_target_shaping_is_refused_naming_the_key(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=key) as caught:
        load_run_config(overrides={"data.corpus": "x", key: value})
    assert "\n" not in str(caught.value)


@pytest.fixture(scope="module")
def voted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small prepared corpus with votes: 20 clips per speaker (12 train, 4 dev, 4 test)."""
    root = tmp_path_factory.mktemp("voted")
    return write_disagreement_corpus(
        root, clips_per_speaker=20, sampled=True, annotators=5
    ).prepared


def test_task_distribution_needs_votes(voted: Path, tmp_path: Path) -> None:
    prepared = read_prepared(voted)
    config = ModelConfig.model_validate({"backbone": "tiny-wavlm", "task": "distribution"})
    resolved = resolve_task(config, prepared)
    assert (resolved.task, resolved.attributes, resolved.labels) == (
        "distribution",
        [],
        list(PAPER4),
    )
    bare = dataclasses.replace(
        prepared, manifest=[dataclasses.replace(u, votes=None) for u in prepared.manifest]
    )
    with pytest.raises(TaskError, match="prepare it with --targets distribution") as caught:
        resolve_task(config, bare)
    assert "\n" not in str(caught.value)


def _with_vote_only_utterances(prepared: PreparedCorpus) -> PreparedCorpus:
    """``prepared`` plus, in every split, copies of its clips whose listeners split evenly
    (no majority: label "") and copies that only ``other`` was chosen for (no target)."""
    by_key = {u.key: u for u in prepared.manifest}
    extra, folds = [], []
    for fold in prepared.folds:
        added = {}
        for split in ("train", "dev", "test"):
            keys = getattr(fold, split)[:3]
            even = [dataclasses.replace(by_key[k], key=f"{k}-even", label="",
                                        votes={"Neutral": 1.0, "Angry": 1.0, "other": 0.0})
                    for k in keys]  # fmt: skip
            other = dataclasses.replace(by_key[keys[0]], key=f"{keys[0]}-other", label="",
                                        votes={"other": 2.0})  # fmt: skip
            extra += [*even, other]
            added[split] = [*getattr(fold, split), *(u.key for u in [*even, other])]
        folds.append(dataclasses.replace(fold, **added))
    return dataclasses.replace(prepared, manifest=[*prepared.manifest, *extra], folds=folds)


def _fold(config, prepared: PreparedCorpus, out: Path) -> dict:
    runner = FoldRunner(
        config, accelerator_for("no"), prepared, prepared.folds[0], out,
        FeatureCache(), BadAudioLog(out / "bad.csv"),
    )  # fmt: skip
    return runner.run()


@pytest.mark.slow
def test_vote_only_utterances_train_the_distribution_and_leave_hard_labels_unchanged(
    voted: Path, tmp_path: Path
) -> None:
    prepared = read_prepared(voted)
    widened = _with_vote_only_utterances(prepared)
    assert len(usable(widened.manifest, "distribution", PAPER4)) == len(prepared.manifest) + 9
    hard = tiny_run(voted, tmp_path / "h", **{"model.task": "categorical", "optim.epochs": 2})
    plain = _fold(hard, prepared, tmp_path / "plain")
    wide = _fold(hard, widened, tmp_path / "wide")
    assert wide.pop("left_out") == {"train": 4, "dev": 4, "test": 4}
    for result in (plain, wide):
        result["test"].pop("predictions", None)
        for row in result["history"]:
            row.pop("seconds")
    assert wide == plain  # the vote-only utterances change nothing of hard-label training
    soft = tiny_run(voted, tmp_path / "s", **{"model.task": "distribution", "optim.epochs": 2})
    result = _fold(soft, widened, tmp_path / "soft")
    assert result["left_out"] == {"train": 1, "dev": 1, "test": 1}  # only "other" votes
    test = result["test"]
    assert (test["n"], test["n_labelled"]) == (16 + 3, 16)
    assert math.isfinite(test["jsd"]) and 0 <= test["jsd"] <= LN2 and math.isfinite(test["uar"])
    assert sum(map(sum, test["confusion"])) == 16  # UAR counts the labelled clips only


@pytest.mark.slow
def test_a_dev_split_without_targets_tests_the_first_epoch(voted: Path, tmp_path: Path) -> None:
    prepared = read_prepared(voted)
    fold = prepared.folds[0]
    silent = [dataclasses.replace(u, votes={"other": 1.0}) if u.key in fold.dev else u
              for u in prepared.manifest]  # fmt: skip
    config = tiny_run(voted, tmp_path / "s", **{"model.task": "distribution", "optim.epochs": 2})
    result = _fold(config, dataclasses.replace(prepared, manifest=silent), tmp_path / "fold")
    assert result["left_out"] == {"dev": len(fold.dev)}
    assert result["best_epoch"] == 1 and math.isnan(result["dev_jsd"])
    assert math.isfinite(result["test"]["jsd"])
    saved = json.loads((tmp_path / "fold" / "results.json").read_text())
    assert saved["dev_jsd"] is None  # strict JSON: an undefined score is null


@pytest.mark.slow
def test_distribution_training_end_to_end(voted: Path, tmp_path: Path) -> None:
    config = tiny_run(voted, tmp_path / "run", **{"model.task": "distribution", "optim.epochs": 6})
    result = train(config)
    fold = result.folds[0]
    test = fold["test"]
    assert set(fold) >= {"dev_jsd", "best_epoch"} and "dev_uar" not in fold
    assert math.isfinite(test["jsd"]) and math.isfinite(test["kld"]) and 0 <= test["uar"] <= 1
    history = fold["history"]
    best = min(history, key=lambda row: row["dev_jsd"])
    assert fold["best_epoch"] == best["epoch"] and fold["dev_jsd"] == best["dev_jsd"]
    assert {"train_jsd", "train_uar", "dev_jsd", "dev_kld", "dev_uar"} <= set(history[0])
    assert "JSD" in result.summary and "UAR" in result.summary
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["overall"]["mean_std"]["jsd"]["mean"] == pytest.approx(test["jsd"])
    header = (tmp_path / "run" / "fold-fold1" / "predictions.csv").read_text().splitlines()[0]
    assert header.startswith("key,label,predicted,votes_Neutral,")
    assert header.endswith(",probability_Happy")

    scored = evaluate(tmp_path / "run")
    (again,) = scored["folds"]
    for key in ("jsd", "kld", "uar", "accuracy", "macro_f1", "n", "n_labelled"):
        assert again[key] == pytest.approx(test[key], abs=1e-5)
    assert scored["overall"]["pooled"]["jsd"] == pytest.approx(test["jsd"], abs=1e-5)

    model_dir = tmp_path / "run" / "fold-fold1" / "model"
    model = SERModel.load(model_dir)
    assert model.layout.task == "distribution" and model.layout.width == 4
    prepared = read_prepared(voted)
    clips = [u.path for u in prepared.manifest if u.key in prepared.folds[0].test]
    predictions = predict(clips, model=model_dir)
    probabilities = torch.tensor([[p.probabilities[name] for name in PAPER4] for p in predictions])
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(len(clips)), atol=1e-5)
    report = export_onnx(model, tmp_path / "onnx")  # checks onnxruntime against PyTorch
    assert report is not None


def test_a_corpus_without_votes_is_refused_for_training_and_scoring(tmp_path: Path) -> None:
    corpus = make_corpus(tmp_path / "tones")  # class labels, no annotator votes
    config = tiny_run(corpus, tmp_path / "run", **{"model.task": "distribution"})
    with pytest.raises(TaskError, match="prepare it with --targets distribution"):
        train(config)
    model = build_model(
        ModelConfig.model_validate(
            {"backbone": "tiny-wavlm", "head_dim": 8, "task": "distribution"}
        )
    )
    model.save(tmp_path / "model")
    with pytest.raises(TaskError, match=r"a distribution model.*--targets distribution") as caught:
        evaluate(tmp_path / "model", corpus)
    assert "\n" not in str(caught.value)


def test_shares_of_the_generated_corpus_are_its_true_distributions(tmp_path: Path) -> None:
    corpus = write_disagreement_corpus(tmp_path, clips_per_speaker=6)
    prepared = read_prepared(corpus.prepared)
    for utterance in prepared.manifest:
        assert vote_shares(utterance.votes, PAPER4) == pytest.approx(corpus.truth[utterance.key])
        assert utterance.label == PAPER4[max(range(4), key=corpus.truth[utterance.key].__getitem__)]
    assert shares_at(1.3) == pytest.approx([0, 0.7, 0.3, 0])
    with pytest.raises(ValueError, match="odd"):
        write_disagreement_corpus(tmp_path / "even", clips_per_speaker=1, sampled=True)
