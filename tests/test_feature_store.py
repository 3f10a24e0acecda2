"""The persistent feature cache: hits and misses across folds and runs, concurrent writers,
interrupted and damaged writes, the size budget, and `peft-ser cache`."""

from __future__ import annotations

import dataclasses
import errno
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import safetensors.torch
import torch
from _stores import train_refused_by_the_store
from _tones import make_corpus, tiny_run
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.data.feature_store import FeatureStore
from peft_ser.data.manifest import Fold, read_prepared, save_prepared
from peft_ser.data.states import FeatureCache, states_crop
from peft_ser.models.ser_model import SERModel
from peft_ser.training import train
from peft_ser.utils import fileio

TAKES = 5


@pytest.fixture(scope="module")
def five_folds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tone corpus with five takes per speaker and class, in five folds (one take each)."""
    prepared_dir = make_corpus(tmp_path_factory.mktemp("five"), clips=TAKES)
    prepared = read_prepared(prepared_dir)
    speakers = {"dev": ("s1", "s2"), "test": ("s3", "s4")}

    def keys(take: int, split: str | None = None) -> list[str]:
        return [
            u.key
            for u in prepared.manifest
            if u.key.endswith(f"_{take}") and (split is None or u.speaker in speakers[split])
        ]

    folds = [
        Fold(
            f"fold{take + 1}",
            [k for other in range(TAKES) if other != take for k in keys(other)],
            keys(take, "dev"),
            keys(take, "test"),
        )
        for take in range(TAKES)
    ]
    save_prepared(prepared_dir, dataclasses.replace(prepared, folds=folds))
    return prepared_dir


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Clips passed through the backbone, batch by batch."""
    counts: list[int] = []
    original = SERModel.encode

    def counting(self: SERModel, waveforms: torch.Tensor, lengths: torch.Tensor | None = None):
        counts.append(int(waveforms.shape[0]))
        return original(self, waveforms, lengths)

    monkeypatch.setattr(SERModel, "encode", counting)
    return counts


def _frozen(corpus: Path, out: Path, store: Path, **overrides: object):
    settings = {"data.folds": None, "optim.epochs": 1, "feature_cache_dir": str(store)}
    return tiny_run(corpus, out, **settings | overrides)


@pytest.mark.slow
def test_a_five_fold_run_encodes_each_utterance_once_and_a_second_run_none(
    five_folds: Path, tmp_path: Path, encoded: list[int]
) -> None:
    prepared = read_prepared(five_folds)
    whole = {"data.crop_seconds": None}
    first = train(_frozen(five_folds, tmp_path / "a", tmp_path / "store", **whole))
    assert len(first.folds) == 5
    assert sum(encoded) == len(prepared.manifest)
    encoded.clear()
    again = {**whole, "data.folds": "1"}
    second = train(_frozen(five_folds, tmp_path / "b", tmp_path / "store", **again))
    assert sum(encoded) == 0
    assert second.folds[0]["test"]["uar"] == first.folds[0]["test"]["uar"]


@pytest.mark.slow
def test_a_crop_makes_its_own_entries_only_for_clips_longer_than_it(
    corpus: Path, tmp_path: Path, encoded: list[int]
) -> None:
    prepared = read_prepared(corpus)
    by_key = {u.key: u for u in prepared.manifest}
    crop = 12_000  # tiny_run's 0.75 s
    needed = {
        (key, states_crop(by_key[key], crop if split == "train" else None))
        for fold in prepared.folds
        for split in ("train", "dev", "test")
        for key in getattr(fold, split)
    }
    assert len(prepared.manifest) < len(needed) < 2 * len(prepared.manifest)
    train(_frozen(corpus, tmp_path / "a", tmp_path / "store"))
    assert sum(encoded) == len(needed)
    assert len(FeatureStore(tmp_path / "store").entries()) == len(needed)


def test_eval_crop_encodes_dev_and_test_cropped(corpus: Path, tmp_path: Path) -> None:
    cache = FeatureCache()
    config = tiny_run(corpus, tmp_path / "run", **{"data.eval_max_seconds": 0.6, "optim.epochs": 1})
    train(config, cache=cache)
    prepared = read_prepared(corpus)
    dev = [u for u in prepared.manifest if u.key in set(prepared.folds[0].dev)]
    cropped = [u for u in dev if states_crop(u, 9_600) is not None]
    assert cropped
    frames = {cache.get(u.key, 9_600).shape[1] for u in cropped}
    assert len(frames) == 1, "every cropped clip has the frames of 0.6 s"
    assert all((u.key, None) not in cache for u in cropped)


def test_a_damaged_entry_is_a_miss_and_encoded_again(
    corpus: Path, tmp_path: Path, encoded: list[int]
) -> None:
    store_dir = tmp_path / "store"
    train(_frozen(corpus, tmp_path / "a", store_dir, **{"data.folds": "1"}))
    entries = FeatureStore(store_dir).entries()
    entries[0].write_bytes(entries[0].read_bytes()[:100])  # truncated
    entries[1].write_bytes(b"")
    encoded.clear()
    train(_frozen(corpus, tmp_path / "b", store_dir, **{"data.folds": "1"}))
    assert sum(encoded) == 2
    assert all(FeatureStore(store_dir).load(path) is not None for path in entries)


def test_an_interrupted_write_leaves_no_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FeatureStore(tmp_path)
    path = store.entry("f" * 64, "content", None)

    def dies_half_way(temporary: str) -> None:
        Path(temporary).write_bytes(b"\x00" * 10)
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio, "_umask", lambda: 0o022)
    with pytest.raises(KeyboardInterrupt):
        fileio.write_atomic_with(path, dies_half_way)
    assert not path.exists() and not list(path.parent.iterdir())
    assert store.load(path) is None


def _write_many(root: str, worker: int) -> int:
    store = FeatureStore(root)
    for round_ in range(5):
        for item in range(8):
            states = torch.full((2, 3, 4), float(item))
            store.save(store.entry("f" * 64, f"clip{item}", None), states)
            found = store.load(store.entry("f" * 64, f"clip{(item + worker + round_) % 8}", None))
            assert found is None or found.shape == (2, 3, 4)
    return worker


def test_concurrent_writers_leave_whole_entries(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(3, mp_context=context) as pool:
        assert sorted(pool.map(_write_many, [str(tmp_path)] * 3, range(3))) == [0, 1, 2]
    store = FeatureStore(tmp_path)
    assert len(store.entries()) == 8
    for item in range(8):
        found = store.load(store.entry("f" * 64, f"clip{item}", None))
        assert found is not None and torch.equal(found.float(), torch.full((2, 3, 4), float(item)))
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


def test_the_budget_removes_the_least_recently_used(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, budget_gb=1e-9)  # 1 byte: nothing fits
    paths = [store.entry("f" * 64, f"clip{i}", None) for i in range(4)]
    for age, path in enumerate(paths):
        store.save(path, torch.zeros(4, 16, 8))
        os.utime(path, (1000 + age, 1000 + age))
    size = paths[0].stat().st_size
    store.budget_bytes = 2 * size
    assert store.load(paths[0]) is not None  # a hit makes it the most recently used
    assert store.enforce_budget() == 2
    assert [p.exists() for p in paths] == [True, False, False, True]


def test_cache_command_shows_and_clears(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    for fingerprint in ("a" * 64, "b" * 64):
        store.save(store.entry(fingerprint, "clip", None), torch.zeros(2, 5, 4))
    runner = CliRunner()
    shown = runner.invoke(app, ["cache", "show", "--dir", str(tmp_path)])
    assert shown.exit_code == 0 and "2 entries" in shown.output and "a" * 16 in shown.output
    cleared = runner.invoke(app, ["cache", "clear", "--dir", str(tmp_path), "--fingerprint", "a"])
    assert cleared.exit_code == 0 and "freed" in cleared.output
    assert [p.parent.parent.name for p in store.entries()] == ["b" * 16]
    assert runner.invoke(app, ["cache", "clear", "--dir", str(tmp_path)]).exit_code == 0
    assert store.entries() == []


def _garbage(path: Path) -> None:
    """Other finite numbers in the entry's own header: the shape and dtype still fit."""
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header:] = (
        torch.full(((len(data) - header) // 2,), 0.5, dtype=torch.float16).numpy().tobytes()
    )
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated": lambda path: path.write_bytes(path.read_bytes()[:100]),
    "wrong shape": lambda path: safetensors.torch.save_file(
        {"states": torch.zeros(2, 3, dtype=torch.float16)}, path, metadata={"checksum": "0"}
    ),
    "wrong dtype": lambda path: safetensors.torch.save_file(
        {"states": torch.zeros(2, 3, 4)}, path, metadata={"checksum": "0"}
    ),
    "finite garbage": _garbage,
    "another entry's file": lambda path: path.write_bytes(
        next(p for p in path.parent.parent.rglob("*.safetensors") if p != path).read_bytes()
    ),
}


def test_damaged_entries_are_named_and_encoded_again(
    corpus: Path, tmp_path: Path, encoded: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    store_dir = tmp_path / "store"
    first = train(_frozen(corpus, tmp_path / "a", store_dir, **{"data.folds": "1"}))
    entries = FeatureStore(store_dir).entries()
    damaged = dict(zip(DAMAGE, entries, strict=False))
    for name, path in damaged.items():
        DAMAGE[name](path)
    encoded.clear()
    with caplog.at_level(logging.WARNING, logger="peft_ser"):
        second = train(_frozen(corpus, tmp_path / "b", store_dir, **{"data.folds": "1"}))
    assert sum(encoded) == len(DAMAGE)
    warned = [r.getMessage() for r in caplog.records if "is damaged" in r.getMessage()]
    assert sorted(line.split()[2] for line in warned) == sorted(map(str, damaged.values()))
    assert all(FeatureStore(store_dir).load(path) is not None for path in entries)
    assert first.folds[0]["history"][-1]["dev_loss"] == second.folds[0]["history"][-1]["dev_loss"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_store_that_refuses_writes_is_left_with_one_warning(
    corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    code: int,
) -> None:
    config = _frozen(corpus, tmp_path / "a", tmp_path / "store", **{"data.folds": "1"})
    fold = train_refused_by_the_store(config, tmp_path / "store", code, monkeypatch, caplog)
    assert fold["test"]["n"] == 8


def _train_into(arguments: tuple[str, str, str]) -> list[dict[str, float]]:
    corpus, out, store = arguments
    settings = {"data.folds": "1", "threads": 1}  # equal results need equal thread counts
    result = train(_frozen(Path(corpus), Path(out), Path(store), **settings))
    return [{k: v for k, v in row.items() if k != "seconds"} for row in result.folds[0]["history"]]


@pytest.mark.slow  # a second process imports torch
def test_two_processes_filling_one_store_train_the_same(corpus: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    jobs = [(str(corpus), str(tmp_path / name), store) for name in ("a", "b")]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        first, second = pool.map(_train_into, jobs)
    assert first == second
    assert _train_into((str(corpus), str(tmp_path / "c"), store)) == first  # all from the store
