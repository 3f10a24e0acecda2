"""Evaluation batching and cropping, bf16 training on CPU, and the caches that keep epochs fast."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from _models import build_tiny_model
from _tones import bf16_lora_step_setup, make_corpus, tiny_run

import peft_ser.data.audio_cache as audio_cache
import peft_ser.utils.precision as precision
from peft_ser.config import load_run_config
from peft_ser.corpora import preprocess_corpus
from peft_ser.data.audio_cache import RunAudio
from peft_ser.data.dataset import UtteranceDataset
from peft_ser.data.manifest import read_prepared, select
from peft_ser.data.sampler import LengthBucketSampler, padding_waste
from peft_ser.evaluation.scoring import loader_batches, to_device
from peft_ser.models.ser_model import SERModel
from peft_ser.training import train
from peft_ser.utils.precision import bf16_autocast

BF16_LOGIT_TOLERANCE = 0.02
"""bf16 keeps 8 bits of mantissa (relative steps of 2**-8 = 0.4 %); through a few layers the
logits of a tiny random model stay within 2 % of their largest magnitude (0.3 % measured)."""


def _logits_by_index(
    model: torch.nn.Module, dataset: UtteranceDataset, sampler: LengthBucketSampler
) -> dict[int, torch.Tensor]:
    out: dict[int, torch.Tensor] = {}
    with torch.inference_mode():
        for batch in loader_batches(dataset, sampler, num_workers=0):
            batch = to_device(batch, torch.device("cpu"))
            logits = model(batch.waveforms, batch.lengths)
            out.update(zip(batch.indices.tolist(), logits, strict=True))
    return out


@pytest.fixture
def dev_and_model(corpus: Path) -> tuple[UtteranceDataset, torch.nn.Module]:
    """The first fold's dev set and a tiny WavLM + LoRA model of random weights, in eval mode."""
    prepared = read_prepared(corpus)
    dataset = UtteranceDataset(select(prepared, prepared.folds[0].dev), prepared.labels)
    return dataset, build_tiny_model("tiny-wavlm", head_dim=32)


def test_masked_padding_makes_sorted_batches_give_each_clips_own_logits(
    dev_and_model: tuple[UtteranceDataset, torch.nn.Module],
) -> None:
    dataset, model = dev_and_model
    lengths = dataset.lengths()
    alone = _logits_by_index(model, dataset, LengthBucketSampler(lengths, 1, shuffle=False))
    sorted_ = LengthBucketSampler(lengths, 5, shuffle=False)
    random_ = LengthBucketSampler(lengths, 5, shuffle=False, bucketing=False)
    assert len(set(map(len, sorted_.global_batches()))) > 1 or len(dataset) <= 5
    for sampler in (sorted_, random_):
        batched = _logits_by_index(model, dataset, sampler)
        assert batched.keys() == alone.keys()
        for index, logits in alone.items():
            torch.testing.assert_close(batched[index], logits, atol=1e-5, rtol=1e-4)


ROUNDING_MARGIN = 1e-4
"""Logits of one clip in batches of other sizes differ by float rounding only (another matrix
shape takes another kernel blocking: within 1e-5 here, see the test above); a clip whose top two
logits are closer than this may flip on another CPU's kernels and is not compared exactly."""


def _near_ties(run: Path, corpus: Path, split: str) -> set[str]:
    """Keys of the split's clips whose best two logits under the fold's model are within
    `ROUNDING_MARGIN`: their predicted class is the kernels' choice, not the batch size's."""
    prepared = read_prepared(corpus)
    dataset = UtteranceDataset(select(prepared, getattr(prepared.folds[0], split)), prepared.labels)
    model = SERModel.load(run / "fold-fold1" / "model").eval()
    sampler = LengthBucketSampler(dataset.lengths(), 1, shuffle=False)
    logits = _logits_by_index(model, dataset, sampler)
    return {
        dataset.utterances[i].key
        for i, row in logits.items()
        if float(row.topk(2).values[0] - row.topk(2).values[1]) < ROUNDING_MARGIN
    }


@pytest.mark.slow
def test_eval_batch_size_changes_no_result(corpus: Path, tmp_path: Path) -> None:
    settings = {"model.method": "lora", "optim.epochs": 1, "threads": 1, "mixed_precision": "no"}
    one = train(tiny_run(corpus, tmp_path / "b1", **settings, **{"data.eval_batch_size": 1}))
    big = train(tiny_run(corpus, tmp_path / "b64", **settings, **{"data.eval_batch_size": 64}))
    for a, b in zip(one.folds[0]["history"], big.folds[0]["history"], strict=True):
        assert a["dev_loss"] == pytest.approx(b["dev_loss"], rel=1e-5)
    if not _near_ties(one.run_dir, corpus, "dev"):
        assert one.folds[0]["history"][0]["dev_uar"] == big.folds[0]["history"][0]["dev_uar"]
    ties = _near_ties(one.run_dir, corpus, "test")
    predictions = [
        [row for row in (run / "fold-fold1" / "predictions.csv").read_text().splitlines()
         if row.split(",")[0] not in ties]
        for run in (one.run_dir, big.run_dir)
    ]  # fmt: skip
    assert len(predictions[0]) > 1 and predictions[0] == predictions[1]


# -- bf16 ---------------------------------------------------------------------------------------


def test_auto_precision_follows_the_devices_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for native, expected in ((True, "bf16"), (False, "fp16")):
        monkeypatch.setattr(precision, "device_has_native_bf16", lambda _, native=native: native)
        assert precision.resolve_mixed_precision("auto") == expected
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # measured (bench/bench_bf16.py, docs/training.md): no less accurate and faster where native
    for native, expected in ((True, "bf16"), (False, "no")):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda native=native: native)
        assert precision.resolve_mixed_precision("auto") == expected
        assert precision.resolve_mixed_precision("bf16") == "bf16"
        assert precision.resolve_mixed_precision("no") == "no"


@pytest.mark.parametrize("native", [True, False])
def test_auto_on_a_cpu_gives_the_accelerator_the_cpus_choice_without_a_warning(
    native: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    accelerator = precision.accelerator_for("auto")
    assert accelerator.mixed_precision == ("bf16" if native else "no")
    assert "emulated" not in caplog.text
    precision.accelerator_for("bf16")  # asked for: emulated bf16 is said to be slower
    assert ("emulated" in caplog.text) is not native


def test_the_demo_trains_in_fp32_on_every_cpu() -> None:
    """The README's demo figures must not depend on whether the CPU has native bf16."""
    config = load_run_config(Path(__file__).parents[1] / "configs" / "demo.yaml")
    assert config.mixed_precision == "no"


def test_bf16_steps_compute_in_bf16_and_keep_fp32_weights_and_state(
    corpus: Path, tmp_path: Path
) -> None:
    runner, batch, seen = bf16_lora_step_setup(corpus, tmp_path)
    before = {k: v.clone() for k, v in runner.model.trainable_state_dict().items()}
    answered = runner._step([batch], 1)  # a group of one micro-batch: no accumulation
    assert answered is not None
    [logits] = answered
    assert logits.dtype == torch.float32
    assert seen and set(seen) == {torch.bfloat16}
    after = runner.model.trainable_state_dict()
    assert all(t.dtype == torch.float32 for t in after.values())
    assert any(not torch.equal(before[k], after[k]) for k in before), "the step changed nothing"
    state = runner.optimizer.state_dict()["state"]
    assert state and all(
        t.dtype == torch.float32 for s in state.values() for t in s.values() if t.dim()
    )


def test_bf16_logits_agree_with_fp32_within_tolerance(
    dev_and_model: tuple[UtteranceDataset, torch.nn.Module],
) -> None:
    dataset, model = dev_and_model
    sampler = LengthBucketSampler(dataset.lengths(), 8, shuffle=False)
    fp32 = _logits_by_index(model, dataset, sampler)
    with bf16_autocast("cpu"):
        bf16 = _logits_by_index(model, dataset, sampler)
    worst = max(float((bf16[i].float() - fp32[i]).abs().max()) for i in fp32)
    scale = max(float(t.abs().max()) for t in fp32.values())
    print(f"bf16 vs fp32: largest logit difference {worst:.2e}, largest logit {scale:.2e}")
    assert worst <= BF16_LOGIT_TOLERANCE * scale


# -- decoded audio ------------------------------------------------------------------------------


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Files decoded, by path."""
    counts: Counter[str] = Counter()
    original = audio_cache.load_audio

    def counting(path: str | Path, *args: object, **kwargs: object) -> np.ndarray:
        counts[str(path)] += 1
        return original(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(audio_cache, "load_audio", counting)
    return counts


@pytest.mark.slow
def test_a_run_decodes_every_file_once_over_epochs_and_folds(
    corpus: Path, tmp_path: Path, decodes: Counter[str]
) -> None:
    settings = {"model.method": "lora", "optim.epochs": 2, "data.folds": "1,2"}
    train(tiny_run(corpus, tmp_path / "run", **settings))
    paths = {u.path for u in read_prepared(corpus).manifest}
    assert set(decodes) == paths
    assert set(decodes.values()) == {1}


def test_a_run_over_a_preprocessed_corpus_decodes_only_the_files_changed_since(
    tmp_path: Path, decodes: Counter[str]
) -> None:
    prepared = make_corpus(tmp_path / "corpus")
    preprocess_corpus(prepared)
    decodes.clear()
    corpus = read_prepared(prepared)
    changed = select(corpus, corpus.folds[0].train[:1])[0].path
    os.utime(changed, ns=(1, 1))  # an edited file: its entry no longer names it
    train(tiny_run(prepared, tmp_path / "run", **{"model.method": "lora", "optim.epochs": 1}))
    assert dict(decodes) == {changed: 1}


def test_beyond_the_memory_budget_and_in_workers_clips_are_read_back_from_disk(
    corpus: Path, tmp_path: Path, decodes: Counter[str]
) -> None:
    paths = [u.path for u in read_prepared(corpus).manifest[:3]]
    first = RunAudio(0, tmp_path / "spill")
    waves = [first.load(path) for path in paths]
    fresh = RunAudio(0, tmp_path / "spill")  # a worker's copy: its memory is empty
    for path, wave in zip(paths, waves, strict=True):
        np.testing.assert_array_equal(fresh.load(path), wave)
    assert first.nbytes == 0 and list(decodes.values()) == [1, 1, 1]
    decodes.clear()
    kept = RunAudio(waves[0].nbytes)  # room for the first clip only, and no disk
    for path in (paths[0], paths[0], paths[1], paths[1]):
        kept.load(path)
    assert kept.nbytes == waves[0].nbytes
    assert decodes[paths[0]] == 1 and decodes[paths[1]] == 2


def test_evaluation_batches_stay_within_their_padded_budget() -> None:
    lengths = np.random.default_rng(0).integers(1_000, 50_000, 300).tolist()
    sampler = LengthBucketSampler(lengths, 64, shuffle=False, max_batch_samples=200_000)
    batches = sampler.global_batches()
    assert sorted(i for b in batches for i in b) == list(range(300))
    assert len(sampler) == len(batches)
    assert all(len(b) <= 64 and len(b) * max(lengths[i] for i in b) <= 200_000 for b in batches)
    assert max(map(len, batches)) > 2 * min(map(len, batches))  # many short, few long
    alone = LengthBucketSampler([90_000, 10], 8, shuffle=False, max_batch_samples=50_000)
    assert alone.global_batches() == [[1], [0]]  # a clip over the budget goes alone


def test_a_small_split_is_not_padded_into_a_few_wide_batches() -> None:
    seconds = np.clip(np.random.default_rng(1).lognormal(np.log(3.4), 0.65, 32), 0.6, 20.0)
    lengths = (seconds * 16_000).astype(int).tolist()
    budget = 160 * 16_000
    bounded = LengthBucketSampler(lengths, 64, shuffle=False, max_batch_samples=budget)
    unbounded = LengthBucketSampler(
        lengths, 64, shuffle=False, max_batch_samples=budget, max_padding=1.0
    )
    batches = bounded.global_batches()
    assert sorted(i for b in batches for i in b) == list(range(32))
    for batch in batches:
        padded = len(batch) * max(lengths[i] for i in batch)
        assert sum(lengths[i] for i in batch) >= 0.9 * padded
    assert padding_waste(unbounded.global_batches(), lengths) > 0.3  # the budget alone
    assert padding_waste(batches, lengths) < 0.1
