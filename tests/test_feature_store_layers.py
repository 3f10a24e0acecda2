"""The feature cache under ``model.tune_layers``: the states below the tuned layers are computed
once per clip and crop (in float32), and a run on them trains what the uncached run trains; its
entries hit across folds, runs, seeds and a resume, never mix with another ``k`` or with a frozen
backbone's, and a damaged entry, an entry of another dtype, a store that refuses writes and
waveform augmentation each end the way the frozen cache's do.

Runs here pin ``threads: 1`` (float sums follow the thread count) and turn augmentation off
(with it on, ``feature_cache: auto`` does not cache these states, as one test checks).
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from _stores import train_refused_by_the_store
from _tones import tiny_run
from test_train_faults import Interrupted, _interrupt_after_epoch, _outcome

from peft_ser import load_model
from peft_ser.data.dataset import UtteranceDataset, collate
from peft_ser.data.feature_store import FeatureStore, checksum
from peft_ser.data.manifest import read_prepared, select
from peft_ser.data.states import FeatureCache, states_crop
from peft_ser.models.ser_model import SERModel
from peft_ser.training import train

TOP = {"model.method": "lora", "model.tune_layers": 1, "augment.enabled": False, "threads": 1}


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Clips whose states below the tuned layers were computed, batch by batch."""
    counts: list[int] = []
    original = SERModel.encode_below

    def counting(self: SERModel, waveforms: torch.Tensor, lengths: torch.Tensor) -> Any:
        counts.append(int(waveforms.shape[0]))
        return original(self, waveforms, lengths)

    monkeypatch.setattr(SERModel, "encode_below", counting)
    return counts


def _run(corpus: Path, out: Path, store: Path, **overrides: object) -> Any:
    """A top-layer run in fp32 (``auto`` is bf16 on CPUs with native bf16, whose rounding the
    float tolerance of `_close` is not meant for)."""
    settings = {
        **TOP, "feature_cache": "on", "feature_cache_dir": str(store), "mixed_precision": "no",
    }  # fmt: skip
    return tiny_run(corpus, out, **settings | overrides)


def _close(cached: dict[str, Any], uncached: dict[str, Any]) -> None:
    """The same fold results within float tolerance (the states are computed in other batches,
    so their sums round differently in the last bits)."""
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in cached["history"]]
    for row, other in zip(strip, uncached["history"], strict=True):
        assert row == pytest.approx({k: other[k] for k in row}, rel=1e-5, abs=1e-6)
    assert cached["best_epoch"] == uncached["best_epoch"]
    assert cached["test"]["confusion"] == uncached["test"]["confusion"]
    assert cached["test"]["loss"] == pytest.approx(uncached["test"]["loss"], rel=1e-5)


def _test_clips(corpus: Path) -> tuple[torch.Tensor, torch.Tensor]:
    prepared = read_prepared(corpus)
    split = UtteranceDataset(select(prepared, prepared.folds[0].test), prepared.labels)
    batch = collate([split[i] for i in range(len(split))])
    return batch.waveforms, batch.lengths


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backbone", "method"),
    [("tiny-wavlm", "lora"), ("tiny-whisper", "combined"), ("tiny-wav2vec2", "full")],
)
def test_a_cached_run_trains_what_the_uncached_run_trains(
    corpus: Path, tmp_path: Path, backbone: str, method: str
) -> None:
    """tiny-wavlm has dropout in its tuned layer (drawn alike in both runs) and a position
    bias that the layer above the cache computes again; combined puts prompts on it."""
    settings: dict[str, object] = {"model.backbone": backbone, "model.method": method}
    if method == "combined":
        settings["model.adapter_dim"] = 8
    cached = train(_run(corpus, tmp_path / "on", tmp_path / "store", **settings)).folds[0]
    plain = _run(corpus, tmp_path / "off", tmp_path / "store", feature_cache="off", **settings)
    uncached = train(plain).folds[0]
    _close(cached, uncached)
    waveforms, lengths = _test_clips(corpus)
    with torch.no_grad():
        logits = [
            load_model(tmp_path / name / "fold-fold1" / "model", device="cpu")(waveforms, lengths)
            for name in ("on", "off")
        ]
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-5)


def _needed(corpus: Path, crop: int = 12_000) -> set[tuple[str, int | None]]:
    """(clip, crop) of every split of both folds: training clips cropped to 0.75 s."""
    prepared = read_prepared(corpus)
    by_key = {u.key: u for u in prepared.manifest}
    return {
        (key, states_crop(by_key[key], crop if split == "train" else None))
        for fold in prepared.folds
        for split in ("train", "dev", "test")
        for key in getattr(fold, split)
    }


@pytest.mark.slow
def test_folds_runs_and_seeds_share_the_entries(
    corpus: Path, tmp_path: Path, encoded: list[int]
) -> None:
    """The entries depend on the weights below the tuned layer, not on the tuned layer's
    initialisation: another seed encodes nothing."""
    both = {"data.folds": None, "optim.epochs": 1}
    train(_run(corpus, tmp_path / "a", tmp_path / "store", **both))
    assert sum(encoded) == len(_needed(corpus))
    [group] = FeatureStore(tmp_path / "store").usage()
    assert group.entries == len(_needed(corpus))
    entry = FeatureStore(tmp_path / "store", dtype="float32").entries()[0]
    assert safetensors.torch.load_file(entry)["states"].dtype == torch.float32
    assert safetensors.torch.load_file(entry)["states"].shape[0] == 2  # embeddings, layer 0
    encoded.clear()
    train(_run(corpus, tmp_path / "b", tmp_path / "store", **both, seed=7))
    assert sum(encoded) == 0


@pytest.mark.slow
def test_entries_of_another_k_or_of_a_frozen_backbone_never_mix(
    corpus: Path, tmp_path: Path, encoded: list[int]
) -> None:
    """One cache shared by three runs (as a sweep shares it): frozen, the top layer, and both
    layers (k = 0: the input embeddings alone); each has its own group of entries."""
    cache = FeatureCache(FeatureStore(tmp_path / "store"))
    store, one_fold = tmp_path / "store", {"optim.epochs": 1}
    train(tiny_run(corpus, tmp_path / "frozen", **one_fold), cache=cache)  # method frozen
    assert sum(encoded) == 0
    train(_run(corpus, tmp_path / "top1", store, **one_fold), cache=cache)
    first = sum(encoded)
    assert first > 0
    train(
        _run(corpus, tmp_path / "top2", store, **one_fold, **{"model.tune_layers": 2}), cache=cache
    )
    assert sum(encoded) == 2 * first
    groups = FeatureStore(store).usage()
    assert len(groups) == 3 and len({g.entries for g in groups}) == 1
    assert cache.dtype == torch.float32


def _as_float16(path: Path) -> None:
    """The entry's states in float16, with a checksum that fits them: only the dtype is wrong."""
    states = safetensors.torch.load_file(path)["states"].half()
    metadata = {"checksum": checksum(path.name, states)}
    safetensors.torch.save_file({"states": states}, path, metadata=metadata)


@pytest.mark.slow
def test_a_damaged_entry_or_one_of_another_dtype_is_encoded_again(
    corpus: Path, tmp_path: Path, encoded: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "store"
    first = train(_run(corpus, tmp_path / "a", store, **{"optim.epochs": 1})).folds[0]
    entries = FeatureStore(store, dtype="float32").entries()
    _as_float16(entries[0])
    entries[1].write_bytes(entries[1].read_bytes()[:100])
    encoded.clear()
    with caplog.at_level(logging.WARNING, logger="peft_ser"):
        second = train(_run(corpus, tmp_path / "b", store, **{"optim.epochs": 1})).folds[0]
    assert sum(encoded) == 2
    damaged = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert len(damaged) == 2 and "not torch.float32" in " ".join(damaged)
    assert _outcome(second) == _outcome(first)


@pytest.mark.slow
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_store_that_refuses_writes_is_left_with_one_warning(
    corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    code: int,
) -> None:
    config = _run(corpus, tmp_path / "a", tmp_path / "store", **{"optim.epochs": 1})
    fold = train_refused_by_the_store(config, tmp_path / "store", code, monkeypatch, caplog)
    assert fold["test"]["n"] == 8


@pytest.mark.slow
def test_a_resumed_run_reads_its_states_back_and_ends_as_the_whole_run(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encoded: list[int]
) -> None:
    """Resumed in a fresh process's state (an empty memory cache), the run's trained layer has
    moved, yet the states below it are read from the store, not computed again."""
    store = tmp_path / "store"
    whole = train(_run(corpus, tmp_path / "whole", store)).folds[0]
    config = _run(corpus, tmp_path / "cut", store)
    with monkeypatch.context() as patch:
        _interrupt_after_epoch(patch, 2)
        with pytest.raises(Interrupted):
            train(config, cache=FeatureCache(FeatureStore(store)))
    encoded.clear()
    resumed = train(config, resume=True, cache=FeatureCache(FeatureStore(store))).folds[0]
    assert sum(encoded) == 0
    assert _outcome(resumed) == _outcome(whole)


@pytest.mark.slow
def test_augmentation_keeps_auto_from_caching_with_one_line(
    corpus: Path, tmp_path: Path, encoded: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    augmented = {"augment.enabled": True, "feature_cache": "auto", "optim.epochs": 1}
    with caplog.at_level(logging.INFO, logger="peft_ser"):
        train(_run(corpus, tmp_path / "auto", tmp_path / "store", **augmented))
    lines = [r.getMessage() for r in caplog.records if "feature cache" in r.getMessage()]
    assert lines == [
        "feature cache off: augmentation changes the training waveforms, so the layers below "
        "the top 1 run every step (augment.enabled false caches them)"
    ]
    assert sum(encoded) == 0 and not (tmp_path / "store").exists()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="peft_ser"):
        train(
            _run(corpus, tmp_path / "on", tmp_path / "store", **augmented | {"feature_cache": "on"})
        )
    assert "feature cache on: training uses clean cached states, no augmentation" in caplog.messages
    assert sum(encoded) > 0
