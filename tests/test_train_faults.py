"""Training faults: damaged checkpoints, interrupted saves, two writers of one run folder, a full
or read-only disk, and random streams that do not depend on the feature cache or on a resume.

Runs here pin ``threads: 1``: equal results are asserted bit for bit, which holds at one thread
count (the order of float sums follows the thread count, not only the data).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from _tones import tiny_run

import peft_ser.training.checkpoint as checkpoint_module
from peft_ser.config import RunConfig
from peft_ser.data.states import FeatureCache
from peft_ser.training import train
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import FolderBusyError, StorageError

ONE_THREAD = {"threads": 1}
FROZEN = {**ONE_THREAD, "optim.epochs": 4}
LORA = {**ONE_THREAD, "model.method": "lora", "optim.epochs": 4}


class Interrupted(BaseException):
    """Stands for a kill: not an Exception, so nothing on the way catches it."""


def _history(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in result["history"]]


def _outcome(result: dict[str, Any]) -> tuple[Any, ...]:
    """All a fold's results but wall-clock times."""
    return _history(result), result["test"], result["best_epoch"]


def _interrupt_after_epoch(monkeypatch: pytest.MonkeyPatch, epoch: int) -> None:
    """Stop the run right after ``epoch``'s checkpoint is complete."""
    save = checkpoint_module.FoldCheckpoints.save

    def saving_then_stopping(self: Any, progress: Any, *args: Any) -> None:
        save(self, progress, *args)
        if progress.epoch == epoch:
            raise Interrupted

    monkeypatch.setattr(checkpoint_module.FoldCheckpoints, "save", saving_then_stopping)


def _interrupted(config: RunConfig, monkeypatch: pytest.MonkeyPatch, epoch: int = 2) -> Path:
    """Run ``config`` until ``epoch``'s checkpoint; return its fold folder."""
    with monkeypatch.context() as patch:
        _interrupt_after_epoch(patch, epoch)
        with pytest.raises(Interrupted):
            train(config)
    return Path(config.output_dir) / "fold-fold1"


@pytest.fixture(scope="module")
def lora_reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted LoRA run, the outcome every resumed run below must reproduce."""
    return train(tiny_run(corpus, tmp_path_factory.mktemp("reference") / "run", **LORA)).folds[0]


# -- random streams ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_warm_feature_cache_trains_what_a_cold_one_trains(corpus: Path, tmp_path: Path) -> None:
    store = {**FROZEN, "feature_cache_dir": str(tmp_path / "store")}
    cold = train(tiny_run(corpus, tmp_path / "cold", **store)).folds[0]
    assert any((tmp_path / "store").rglob("*.safetensors"))
    warm = train(tiny_run(corpus, tmp_path / "warm", **store)).folds[0]
    assert _outcome(warm) == _outcome(cold)


@pytest.mark.slow
def test_a_frozen_run_resumed_with_an_empty_memory_cache_equals_the_whole_run(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory_only = {**FROZEN, "feature_cache_persist": False}
    whole = train(tiny_run(corpus, tmp_path / "whole", **memory_only)).folds[0]
    config = tiny_run(corpus, tmp_path / "cut", **memory_only)
    _interrupted(config, monkeypatch)
    resumed = train(config, resume=True, cache=FeatureCache()).folds[0]
    assert _outcome(resumed) == _outcome(whole)


# -- damaged checkpoints -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def states() -> FeatureCache:
    """One in-memory feature cache for the module's frozen runs (it changes no result)."""
    return FeatureCache()


@pytest.fixture(scope="module")
def reference(
    corpus: Path, tmp_path_factory: pytest.TempPathFactory, states: FeatureCache
) -> dict[str, Any]:
    """An uninterrupted frozen run: what every resumed run below must end with."""
    out = tmp_path_factory.mktemp("reference") / "run"
    return train(tiny_run(corpus, out, **FROZEN), cache=states).folds[0]


def _checkpointed(
    corpus: Path, out: Path, states: FeatureCache, monkeypatch: pytest.MonkeyPatch
) -> tuple[RunConfig, Path]:
    """A frozen run stopped after epoch 3 with the checkpoints of epochs 1-3 all kept."""
    config = tiny_run(corpus, out, **FROZEN)
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_module.FoldCheckpoints, "_prune", lambda self, keep: None)
        _interrupt_after_epoch(patch, 3)
        with pytest.raises(Interrupted):
            train(config, cache=states)
    fold = out / "fold-fold1"
    assert json.loads((fold / "last.json").read_text()) == {"dir": "epoch-003"}
    return config, fold


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


LAST = Path("checkpoints/epoch-003")
DAMAGE = {
    # damage: (what it does to the fold folder, what the warning names)
    "state.json not JSON": (lambda fold: (fold / LAST / "state.json").write_text("{"), "epoch-003"),
    "truncated optimizer": (lambda fold: _truncate(fold / LAST / "optimizer.safetensors"), "opt"),
    "truncated weights": (lambda fold: _truncate(fold / LAST / "trainable.safetensors"), "train"),
    "missing weights": (lambda fold: (fold / LAST / "trainable.safetensors").unlink(), "epoch-003"),
    "last.json not JSON": (lambda fold: (fold / "last.json").write_text("epoch-00"), "last.json"),
    "last.json naming a folder that is gone": (
        lambda fold: (fold / "last.json").write_text('{"dir": "epoch-009"}'),
        "epoch-009, which is gone",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_checkpoint_is_named_and_the_newest_intact_one_resumed(
    corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    states: FeatureCache,
    reference: dict[str, Any],
    damage: str,
) -> None:
    config, fold = _checkpointed(corpus, tmp_path / "run", states, monkeypatch)
    spoil, named = DAMAGE[damage]
    spoil(fold)
    with caplog.at_level(logging.WARNING, logger="peft_ser"):
        resumed = train(config, resume=True, cache=states).folds[0]
    assert _outcome(resumed) == _outcome(reference)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(named in line for line in warnings), warnings


def test_with_no_intact_checkpoint_the_fold_starts_again(
    corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    states: FeatureCache,
    reference: dict[str, Any],
) -> None:
    config, fold = _checkpointed(corpus, tmp_path / "run", states, monkeypatch)
    for state in (fold / "checkpoints").glob("*/state.json"):
        state.write_text("not json")
    with caplog.at_level(logging.WARNING, logger="peft_ser"):
        resumed = train(config, resume=True, cache=states).folds[0]
    assert _outcome(resumed) == _outcome(reference)
    assert "no intact checkpoint" in caplog.text
    assert "training the fold from its first epoch" in caplog.text


def test_a_run_killed_while_saving_keeps_the_previous_checkpoint(
    corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    states: FeatureCache,
    reference: dict[str, Any],
) -> None:
    config = tiny_run(corpus, tmp_path / "run", **FROZEN)

    def dies_halfway(path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"half a file")
        raise Interrupted

    with pytest.raises(Interrupted), _epoch_3_checkpoint_failing(monkeypatch, dies_halfway):
        train(config, cache=states)
    fold = _kept_epoch_2(tmp_path / "run")
    assert not [p for p in (fold / "checkpoints").iterdir() if "003" in p.name]
    resumed = train(config, resume=True, cache=states).folds[0]
    assert _outcome(resumed) == _outcome(reference)


@contextmanager
def _epoch_3_checkpoint_failing(
    monkeypatch: pytest.MonkeyPatch, failure: Callable[[Path], None]
) -> Iterator[None]:
    """Within the block, writing any tensor file of epoch 3's checkpoint calls ``failure``."""
    write = checkpoint_module.save_tensors

    def failing_on_epoch_3(path: Path, tensors: Any) -> None:
        if "epoch-003" in str(path):
            failure(path)
        write(path, tensors)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_module, "save_tensors", failing_on_epoch_3)
        yield


def _kept_epoch_2(run: Path) -> Path:
    """The fold folder, checked to point at epoch 2's checkpoint as the last complete one."""
    fold = run / "fold-fold1"
    assert json.loads((fold / "last.json").read_text()) == {"dir": "epoch-002"}
    return fold


# -- one writer per run folder -------------------------------------------------------------------

HOLD_LOCK = (
    "import sys, time\n"
    "from peft_ser.utils.fileio import FolderLock\n"
    "FolderLock(sys.argv[1], 'training').acquire()\n"
    "print('held', flush=True)\n"
    "time.sleep(300)\n"
)


def test_a_busy_run_folder_is_refused_until_its_holder_dies(
    corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, states: FeatureCache
) -> None:
    run = tmp_path / "run"
    config = tiny_run(corpus, run, **{**FROZEN, "optim.epochs": 1})
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        busy = rf"in use by another training \(process {holder.pid} on "
        with pytest.raises(FolderBusyError, match=busy):
            train(config, cache=states)
        assert not (run / "config.yaml").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with caplog.at_level(logging.WARNING, logger="peft_ser"):
        train(config, cache=states)
    assert f"taking over the lock left by process {holder.pid}" in caplog.text
    assert (run / "results.json").is_file()


# -- a full or read-only disk --------------------------------------------------------------------


def test_a_full_disk_at_a_checkpoint_is_one_line_and_the_run_resumes(
    corpus: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    states: FeatureCache,
    reference: dict[str, Any],
) -> None:
    config = tiny_run(corpus, tmp_path / "run", **FROZEN)

    def full(path: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    with pytest.raises(StorageError) as refused, _epoch_3_checkpoint_failing(monkeypatch, full):
        train(config, cache=states)
    message = str(refused.value)
    assert "\n" not in message and "optimizer.safetensors: no space left on the device" in message
    assert "--resume" in message
    fold = _kept_epoch_2(tmp_path / "run")
    assert {p.name for p in (fold / "checkpoints").iterdir()} <= {"epoch-001", "epoch-002"}
    assert _outcome(train(config, resume=True, cache=states).folds[0]) == _outcome(reference)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2-MiB tmpfs (mounting needs root: skipped without it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)])
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(disk: Path, leave: int) -> Path:
    """Fill ``disk`` but ``leave`` bytes with one ballast file."""
    ballast = disk / "ballast"
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    ballast.write_bytes(b"\0" * max(0, free - leave))
    return ballast


def test_a_really_full_disk_stops_the_run_with_one_line_and_it_resumes(
    corpus: Path, small_disk: Path, states: FeatureCache, reference: dict[str, Any]
) -> None:
    config = tiny_run(corpus, small_disk / "run", **FROZEN)
    ballast = _fill(small_disk, leave=96 * 1024)  # room for a few epochs' files, not all
    with pytest.raises(StorageError, match="no space left on the device"):
        train(config, cache=states)
    ballast.unlink()
    resumed = train(config, resume=True, cache=states).folds[0]
    assert _outcome(resumed) == _outcome(reference)


def test_a_read_only_run_folder_is_one_line_and_destroys_nothing(
    corpus: Path,
    small_disk: Path,
    monkeypatch: pytest.MonkeyPatch,
    states: FeatureCache,
    reference: dict[str, Any],
) -> None:
    config = tiny_run(corpus, small_disk / "run", **FROZEN)
    fold = _interrupted(config, monkeypatch)
    before = {p: p.read_bytes() for p in small_disk.rglob("*") if p.is_file()}
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        with pytest.raises(StorageError, match="read-only file system"):
            train(config, resume=True, cache=states)
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert {p: p.read_bytes() for p in small_disk.rglob("*") if p.is_file()} == before
    assert (fold / "last.json").is_file()
    assert _outcome(train(config, resume=True, cache=states).folds[0]) == _outcome(reference)


# -- the run folder itself -----------------------------------------------------------------------


def test_an_output_dir_that_is_a_file_is_refused_and_kept(corpus: Path, tmp_path: Path) -> None:
    taken = tmp_path / "notes.txt"
    taken.write_text("keep me")
    with pytest.raises(UserError, match="is a file; it names a folder to write into"):
        train(tiny_run(corpus, taken, **FROZEN))
    assert taken.read_text() == "keep me"


def test_an_output_dir_below_a_file_is_one_line_before_any_work(
    corpus: Path, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(StorageError) as raised:
        train(tiny_run(corpus, tmp_path / "notes.txt" / "run", **FROZEN))
    assert str(raised.value).endswith("a file; it names a folder to write into")
    assert "make room" not in str(raised.value)


def test_a_damaged_run_record_is_refused_on_resume_naming_it(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tiny_run(corpus, tmp_path / "run", **FROZEN)
    fold = _interrupted(config, monkeypatch)
    (fold.parent / "config.yaml").write_text("{ half a mapping")
    with pytest.raises(UserError, match=r"config\.yaml:.*invalid YAML.*record is damaged"):
        train(config, resume=True)
    assert (fold / "last.json").is_file()  # the progress is still there


# -- early stopping ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("cut", [2, 3])
def test_a_run_resumed_around_its_early_stop_stops_where_the_whole_run_stopped(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut: int
) -> None:
    """Killed before its stop (epoch 2) or after the stopping epoch's checkpoint (epoch 3):
    the resumed run stops after epoch 3, says so, and ends as the uninterrupted one."""
    stalled = {**FROZEN, "optim.epochs": 10, "optim.lr": 1e-9, "optim.early_stopping_patience": 2}
    whole = train(tiny_run(corpus, tmp_path / "whole", **stalled)).folds[0]
    config = tiny_run(corpus, tmp_path / "cut", **stalled)
    _interrupted(config, monkeypatch, epoch=cut)
    resumed = train(config, resume=True).folds[0]
    assert len(resumed["history"]) == 3
    assert resumed["stopped_early"] == whole["stopped_early"]
    assert _outcome(resumed) == _outcome(whole)
