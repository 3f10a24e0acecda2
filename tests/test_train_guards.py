"""Broken data and broken runs never become results: NaN audio, non-finite steps, collapsed
runs, failed starts, label-homogeneous batches."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from _tones import make_corpus, tiny_run

import peft_ser.data.audio_cache
import peft_ser.data.dataset
from peft_ser.data.manifest import read_prepared, save_prepared
from peft_ser.data.states import FeatureCache
from peft_ser.training import train
from peft_ser.training.guards import NonFiniteSteps, NonFiniteTrainingError, collapse_warnings
from peft_ser.training.run import RunDirError
from peft_ser.utils.errors import UserError

TRAIN_CLIP = "s1_Angry_0"
"""A clip in fold1's training split."""


def _strict_json(path: Path) -> Any:
    """The file parsed as strict JSON: a NaN or Infinity token fails the test."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{path}: non-JSON number {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers(item)]
    return [float(value)] if isinstance(value, int | float) and not isinstance(value, bool) else []


@pytest.mark.slow
@pytest.mark.parametrize("method", ["frozen", "lora"])
def test_a_clip_that_turns_nan_after_prepare_is_named_and_skipped(
    tmp_path: Path, method: str
) -> None:
    prepared = make_corpus(tmp_path / "corpus")
    clip = tmp_path / "corpus" / "wav" / f"{TRAIN_CLIP}.wav"
    wave, rate = sf.read(clip, dtype="float32")
    wave[100] = np.nan
    sf.write(clip, wave, rate, subtype="FLOAT")

    result = train(tiny_run(prepared, tmp_path / "run", **{"model.method": method}))

    rows = (tmp_path / "run" / "bad_audio.csv").read_text().splitlines()
    assert rows[0] == "key,path,split,reason"
    (row,) = rows[1:]
    assert row.startswith(f"{TRAIN_CLIP},{clip},train,") and "not finite" in row
    document = _strict_json(tmp_path / "run" / "results.json")
    assert all(math.isfinite(n) for n in _numbers(document))
    assert result.folds[0]["skipped_steps"] == 0
    assert result.folds[0]["test"]["uar"] > 0.25


def _nan_for(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make decoding return NaN samples for one clip, as if it had slipped past every check."""
    decode = peft_ser.data.audio_cache.load_audio

    def poisoned(path: str, *args: Any, **kwargs: Any) -> np.ndarray:
        wave = decode(path, *args, **kwargs)
        return np.full_like(wave, np.nan) if Path(path).stem == key else wave

    for module in (
        peft_ser.data.audio_cache,
        peft_ser.data.dataset,
    ):  # the run's decoded-audio cache, the dataset
        monkeypatch.setattr(module, "load_audio", poisoned)


@pytest.mark.slow
def test_a_nonfinite_step_is_not_applied_and_the_run_stays_finite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    prepared = make_corpus(tmp_path / "corpus")
    _nan_for(TRAIN_CLIP, monkeypatch)
    settings = {"model.method": "lora", "optim.max_nonfinite_steps": 10}
    result = train(tiny_run(prepared, tmp_path / "run", **settings))

    fold = result.folds[0]
    assert fold["skipped_steps"] == 4  # one batch per epoch holds the clip
    refused = re.findall(
        r"non-finite loss, step not applied \(\d of at most 10\); batch: (.*)", caplog.text
    )
    assert len(refused) == 4 and all(TRAIN_CLIP in keys.split(", ") for keys in refused)
    assert all(math.isfinite(n) for n in _numbers(_strict_json(tmp_path / "run" / "results.json")))
    assert fold["test"]["uar"] > 0.25


@pytest.mark.slow
def test_too_many_nonfinite_steps_stop_the_fold_with_the_clip_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared = make_corpus(tmp_path / "corpus")
    _nan_for(TRAIN_CLIP, monkeypatch)
    config = tiny_run(prepared, tmp_path / "run", **{"model.method": "lora"})
    with pytest.raises(
        NonFiniteTrainingError,
        match=rf"4 training steps .* last batch: .*{TRAIN_CLIP}.*\. Likely cause: non-finite "
        rf"audio or labels of (\S+, )*{TRAIN_CLIP}(, \S+)* \(in every refused batch\)",
    ):
        train(
            config.model_copy(
                update={"optim": config.optim.model_copy(update={"max_nonfinite_steps": 3})}
            )
        )
    fold_dir = tmp_path / "run" / "fold-fold1"
    assert not (fold_dir / "results.json").exists() and not (fold_dir / "model").exists()


def test_a_diverging_run_stops_with_the_learning_rate_named(corpus: Path, tmp_path: Path) -> None:
    config = tiny_run(corpus, tmp_path / "run", **{"optim.epochs": 2})
    # Validation caps optim.lr at 10, which this tiny run survives; past validation, a rate
    # that makes the loss overflow stands for any divergence.
    config = config.model_copy(update={"optim": config.optim.model_copy(update={"lr": 1e30})})
    with pytest.raises(
        NonFiniteTrainingError,
        match=r"Likely cause: a learning rate too high \(optim\.lr = 1e\+30\): the refused "
        "batches share no clip",
    ):
        train(config)


def test_one_refused_step_over_the_limit_names_both_causes() -> None:
    steps = NonFiniteSteps("f", limit=0, lr=0.1)
    with pytest.raises(NonFiniteTrainingError, match="audio or labels in that batch, or a learn"):
        steps.refuse(1, "loss", ["a", "b"])


def test_a_failed_start_can_be_rerun_and_progress_is_protected(
    corpus: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    with pytest.raises(UserError, match="no fold 7"):
        train(tiny_run(corpus, run, **{"data.folds": "7"}))
    assert not run.exists()  # refused before anything was written
    bad = {"model.method": "lora", "feature_cache": "on"}  # found only when the fold starts
    with pytest.raises(UserError, match="feature_cache 'on' needs a frozen backbone"):
        train(tiny_run(corpus, run, **bad))
    assert (run / "config.yaml").is_file()
    train(tiny_run(corpus, run, **{"optim.epochs": 1}))  # the fixed command just works
    with pytest.raises(RunDirError, match="pass --resume to continue it"):
        train(tiny_run(corpus, run, **{"optim.epochs": 1}))
    with pytest.raises(RunDirError, match=r"changed: optim\.epochs"):
        train(tiny_run(corpus, run, **{"optim.epochs": 2}), resume=True)


def _history(train_uar: list[float], train_loss: list[float]) -> list[dict[str, float]]:
    return [
        {"train_uar": u, "train_loss": loss} for u, loss in zip(train_uar, train_loss, strict=True)
    ]


def test_collapse_warnings_name_chance_level_and_rising_loss() -> None:
    learning = _history([0.3, 0.45, 0.6, 0.7, 0.8, 0.85], [1.4, 1.2, 1.0, 0.8, 0.7, 0.6])
    assert collapse_warnings(learning, 4) == []
    chance = _history([0.3, 0.26, 0.25, 0.27, 0.25, 0.25], [1.39, 1.38, 1.38, 1.37, 1.38, 1.37])
    (warning,) = collapse_warnings(chance, 4)
    assert warning.startswith("training UAR stayed at chance (0.25) for the last 5 epochs")
    assert "length bucketing" in warning and "optim.lr" in warning
    rising = _history([0.5, 0.6, 0.55, 0.5, 0.45, 0.4], [1.2, 1.0, 1.1, 1.3, 1.6, 2.0])
    (warning,) = collapse_warnings(rising, 4)
    assert warning.startswith("training loss rose for the last 4 epochs (from 1.0000 to 2.0000)")
    binary = _history([0.5] * 5, [0.69] * 5)
    assert "chance (0.50)" in collapse_warnings(binary, 2)[0]


def test_a_run_that_does_not_learn_is_flagged_in_its_results(corpus: Path, tmp_path: Path) -> None:
    result = train(tiny_run(corpus, tmp_path / "run", **{"optim.lr": 1e-9, "optim.epochs": 6}))
    (warning,) = result.folds[0]["warnings"]
    assert "training UAR stayed at chance" in warning
    assert "warning: fold fold1: training UAR stayed at chance" in result.summary
    assert result.overall["warnings"] == [f"fold fold1: {warning}"]


@pytest.mark.slow
def test_stratified_buckets_keep_learning_where_length_follows_the_label(
    tmp_path: Path,
) -> None:
    """Opt-in length buckets stay mixed in labels, so they learn within two seed spreads of the
    default random batches where length alone would give each batch one label."""
    prepared = make_corpus(tmp_path / "corpus", length_by_label=True, clips=5)
    scores: dict[bool, list[float]] = {True: [], False: []}
    cache = FeatureCache()  # one frozen backbone for all six runs: clips are encoded once
    for bucketing in (True, False):
        for seed in (0, 1, 2):
            settings = {"data.bucketing": bucketing, "seed": seed, "data.batch_size": 8}
            run = tmp_path / f"run-{bucketing}-{seed}"
            result = train(tiny_run(prepared, run, **settings, **{"optim.epochs": 6}), cache=cache)
            scores[bucketing].append(result.overall["mean_std"]["uar"]["mean"])
    bucketed, random = np.array(scores[True]), np.array(scores[False])
    spread = max(bucketed.std(), random.std(), 0.05)
    assert bucketed.mean() >= random.mean() - 2 * spread, scores


@pytest.mark.slow
def test_folds_that_share_speakers_are_flagged_in_the_results(tmp_path: Path) -> None:
    prepared_dir = make_corpus(tmp_path / "corpus")
    prepared = read_prepared(prepared_dir)
    note = "folds share speakers between train and test: results are speaker-dependent"
    save_prepared(prepared_dir, dataclasses.replace(prepared, speaker_leakage=note))
    result = train(tiny_run(prepared_dir, tmp_path / "run", **{"optim.epochs": 1}))
    assert result.overall["warnings"][0] == note
    assert f"warning: {note}" in result.summary
    assert _strict_json(tmp_path / "run" / "results.json")["overall"]["warnings"][0] == note
