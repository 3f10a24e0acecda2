"""Training across folds: the run directory, resumption, and the results over all folds.

A run directory is the whole story of a run and the only state `--resume` needs::

    config.yaml                  the resolved configuration (labels, task and attributes from
                                 the corpus filled in)
    fold-<name>/checkpoints/     epoch-NNN/: trainable weights + config (model.save), optimiser,
                                 scheduler state; last.json / best.json point into it
    fold-<name>/model/           the tested epoch's model (`optim.select`), kept after the fold
    fold-<name>/results.json     written last: its presence marks the fold complete
    fold-<name>/*.csv, *.png     history, test predictions, confusion matrix, learning curves
    .lock                        held by the training that writes here (its process and host)
    tensorboard/<fold>/          TensorBoard scalars per epoch
    bad_audio.csv                clips that could not be used (and were skipped), with reasons
    results.json/.csv, confusion.png, summary.txt   over all folds

Every file is written to a temporary name and renamed into place, so a run killed at any
instant resumes from its last completed epoch. A run that failed before its first checkpoint
holds nothing worth keeping: the same command simply starts it again.

Randomness comes from three places, each a function of the seed and the epoch alone: batch order
and augmentation (their own generators, see `data.sampler` and `data.dataset`) and dropout
(torch's generators, seeded at each epoch's start, see `peft_ser.training.loop.epoch_streams`).
A resumed run, or one whose feature cache was already filled, therefore draws exactly what an
uninterrupted cold run draws.

One run folder has one writer: the training that holds its ``.lock`` (`FolderLock`); a second
one is refused with a line naming the holder, and a lock left by a killed run is taken over.
A full or read-only disk stops the run with one line naming the file (`StorageError`); what
was complete (epochs, folds) is kept, and ``--resume`` continues once there is room.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator

from peft_ser.config import ConfigError, RunConfig, read_config_file
from peft_ser.data.audio_cache import RunAudio, preprocessed
from peft_ser.data.feature_store import FeatureStore
from peft_ser.data.manifest import Fold, PreparedCorpus
from peft_ser.data.states import FeatureCache
from peft_ser.evaluation.results import (
    BAD_AUDIO,
    FOLD_RESULTS,
    BadAudioLog,
    overall_metrics,
    summary_text,
    write_run_results,
)
from peft_ser.models.tasks import resolve_task
from peft_ser.runs.corpus import fold_directory, resolve_corpus, select_folds
from peft_ser.runs.layout import RUN_CONFIG
from peft_ser.training.checkpoint import has_checkpoint
from peft_ser.training.loop import FoldRunner
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import FolderLock, output_folder, storage_errors, write_atomic
from peft_ser.utils.precision import accelerator_for

log = logging.getLogger(__name__)

NO_COMPARE = {
    "progress",
    "num_workers",
    "eval_batch_size",
    "eval_batch_seconds",
    "feature_cache_persist",
    "feature_cache_dir",
    "feature_cache_budget_gb",
    "audio_cache_gb",
}
"""Settings that may change between a run and its resumption without changing its results
(evaluation batches are masked, so their size changes no prediction; stored states are the
states the run would compute)."""


class RunDirError(UserError):
    """The output folder holds another run, or a run that cannot be resumed as asked."""


@dataclass
class RunResult:
    """What `train` returns: per-fold results, the pooled and averaged metrics, a summary."""

    run_dir: Path
    folds: list[dict[str, Any]]
    overall: dict[str, Any]
    summary: str


def train(config: RunConfig, resume: bool = False, cache: FeatureCache | None = None) -> RunResult:
    """Train ``config`` on each selected fold; test the selected epoch (`optim.select`: the best
    dev epoch by default, or the last); write the results.

    With ``resume``, an interrupted run in ``config.output_dir`` continues from the last
    completed epoch of its unfinished fold, and completed folds are read back, not redone.
    Works unchanged under ``accelerate launch`` (every process calls `train`). Runs that share
    a frozen backbone (a grid over head settings, seeds or samplers) can share one ``cache`` of
    its hidden states: each clip is then encoded once for all of them.
    """
    with (
        intra_op_threads(config.threads),
        storage_errors("what was complete is kept: make room and rerun with --resume"),
    ):
        return _train(config, resume, cache)


def _train(config: RunConfig, resume: bool, cache: FeatureCache | None) -> RunResult:
    accelerator = accelerator_for(config.mixed_precision)
    run_dir = output_folder(config.output_dir, "output_dir")
    with accelerator.main_process_first():
        prepared = resolve_corpus(config.data)
    config = config.model_copy(update={"model": resolve_task(config.model, prepared)})
    folds = select_folds(prepared.folds, config.data.folds)
    lock = FolderLock(run_dir, "training")
    if accelerator.is_main_process:
        lock.acquire()
    try:
        if accelerator.is_main_process:
            claim_run_dir(run_dir, config, resume)
        accelerator.wait_for_everyone()
        return _train_folds(config, accelerator, prepared, folds, run_dir, cache)
    finally:
        lock.release()


def _train_folds(
    config: RunConfig,
    accelerator: Accelerator,
    prepared: PreparedCorpus,
    folds: list[Fold],
    run_dir: Path,
    cache: FeatureCache | None,
) -> RunResult:
    cache = cache if cache is not None else FeatureCache(feature_store_for(config))
    with (
        run_log(run_dir / "train.log", accelerator.is_main_process),
        tempfile.TemporaryDirectory(prefix="peft-ser-audio-") as spill,
    ):
        audio = RunAudio(
            round(config.data.audio_cache_gb * 1e9), preprocessed(prepared.directory) or spill
        )
        fold_results = [
            _fold_result(config, accelerator, prepared, fold, run_dir, cache, audio)
            for fold in folds
        ]
        leakage = [prepared.speaker_leakage] if prepared.speaker_leakage else []
        overall = overall_metrics(fold_results, leakage)
        summary = summary_text(config, fold_results, overall)
        if accelerator.is_main_process:
            write_run_results(run_dir, fold_results, overall, prepared.labels, summary)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return RunResult(run_dir, fold_results, overall, summary)


def _fold_result(
    config: RunConfig,
    accelerator: Accelerator,
    prepared: PreparedCorpus,
    fold: Fold,
    run_dir: Path,
    cache: FeatureCache,
    audio: RunAudio,
) -> dict[str, Any]:
    """A fold's results: read back when the fold is complete, else trained (or resumed)."""
    fold_dir = fold_directory(run_dir, fold.name)
    if (fold_dir / FOLD_RESULTS).is_file():
        log.info("fold %s: already complete, read from %s", fold.name, fold_dir)
        return dict(json.loads((fold_dir / FOLD_RESULTS).read_text()))
    bad_audio = BadAudioLog(run_dir / BAD_AUDIO)
    return FoldRunner(config, accelerator, prepared, fold, fold_dir, cache, bad_audio, audio).run()


def feature_store_for(config: RunConfig) -> FeatureStore | None:
    """The persistent feature store a run's cache writes through, or None (memory only)."""
    if not config.feature_cache_persist:
        return None
    return FeatureStore(config.feature_cache_dir, config.feature_cache_budget_gb)


def claim_run_dir(run_dir: Path, config: RunConfig, resume: bool) -> None:
    """Write the resolved config; refuse to mix a new run into one that has made progress.

    Progress is a completed epoch (a checkpoint) or a completed fold. A folder whose earlier
    start failed before either (a typo in a path, a missing corpus) is claimed again silently.
    """
    path = run_dir / RUN_CONFIG
    document = config.model_dump(mode="json")
    if path.is_file() and _has_progress(run_dir):
        if not resume:
            raise RunDirError(
                f"{run_dir} already holds a run with saved progress: pass --resume to continue "
                "it, or choose another output_dir"
            )
        try:
            previous = read_config_file(path)
        except ConfigError as error:
            raise RunDirError(
                f"{error}; this run's record is damaged: restore it, or start again in another "
                "output_dir"
            ) from None
        changed = config_differences(previous, document)
        if changed:
            raise RunDirError(
                f"{run_dir}: cannot resume with a different configuration (changed: "
                f"{', '.join(changed)}); resume with the original settings, or start a new run "
                "in another output_dir"
            )
    elif path.is_file():
        log.info("%s: the earlier start saved no progress; starting afresh", run_dir)
    write_atomic(path, yaml.safe_dump(document, sort_keys=False))


def _has_progress(run_dir: Path) -> bool:
    return any(
        has_checkpoint(fold_dir) or (fold_dir / FOLD_RESULTS).is_file()
        for fold_dir in run_dir.glob("fold-*")
    )


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two config documents (``NO_COMPARE`` aside)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            diff
            for key in sorted(set(old) | set(new))
            if key not in NO_COMPARE
            for diff in config_differences(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [prefix.rstrip(".")] if old != new else []


@contextmanager
def intra_op_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` torch threads (None: leave them), restoring the caller's count."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def run_log(path: Path, enabled: bool) -> Iterator[None]:
    """Copy the package's log records (INFO and up) into ``path`` while the run lasts."""
    if not enabled:
        yield
        return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    package = logging.getLogger("peft_ser")
    level = package.level
    package.addHandler(handler)
    package.setLevel(min(level or logging.INFO, logging.INFO))
    try:
        yield
    finally:
        package.removeHandler(handler)
        package.setLevel(level)
        handler.close()
