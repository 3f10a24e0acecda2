"""Training across folds: the run directory, resumption, and the results over all folds.

A run directory is the whole story of a run and the only state `--resume` needs; its layout
(the config, one folder per fold with its checkpoints, model and results, the logs and the
results over all folds) is `peft_ser.runs.layout.RunDir`'s.

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

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from peft_ser.config import ConfigError, RunConfig, with_defaults
from peft_ser.config.selection import selection_metric
from peft_ser.data.audio_cache import RunAudio, preprocessed
from peft_ser.data.feature_store import FeatureStore
from peft_ser.data.manifest import Fold, PreparedCorpus
from peft_ser.data.states import FeatureCache
from peft_ser.evaluation.results import (
    BadAudioLog,
    overall_metrics,
    summary_text,
    write_run_results,
)
from peft_ser.models.tasks import resolve_task
from peft_ser.runs.corpus import resolve_corpus, select_folds
from peft_ser.runs.layout import RunDir
from peft_ser.training.checkpoint import has_checkpoint
from peft_ser.training.loop import FoldRunner
from peft_ser.training.reporting import check_trackers
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import FolderLock, output_folder, storage_errors
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
    "report_to",
}
"""Settings that may change between a run and its resumption without changing its results
(evaluation batches are masked, so their size changes no prediction; stored states are the
states the run would compute; trackers only watch)."""


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
    check_trackers(config.report_to)
    accelerator = accelerator_for(config.mixed_precision)
    run = RunDir(output_folder(config.output_dir, "output_dir"))
    with accelerator.main_process_first():
        prepared = resolve_corpus(config.data)
    config = config.model_copy(update={"model": resolve_task(config.model, prepared)})
    # the task and attributes the corpus gave: refused before anything is written
    selection_metric(config.optim.select_on, str(config.model.task), config.model.attributes)
    if config.model.task != "distribution":
        prepared = prepared.labelled()  # class and attribute tasks: no vote-only utterance
    folds = select_folds(prepared.folds, config.data.folds)
    lock = FolderLock(run.path, "training")
    if accelerator.is_main_process:
        lock.acquire()
    try:
        if accelerator.is_main_process:
            claim_run_dir(run, config, resume)
        accelerator.wait_for_everyone()
        return _train_folds(config, accelerator, prepared, folds, run, cache)
    finally:
        lock.release()


def _train_folds(
    config: RunConfig,
    accelerator: Accelerator,
    prepared: PreparedCorpus,
    folds: list[Fold],
    run: RunDir,
    cache: FeatureCache | None,
) -> RunResult:
    cache = cache if cache is not None else FeatureCache(feature_store_for(config))
    with (
        run_log(run.train_log, accelerator.is_main_process),
        tempfile.TemporaryDirectory(prefix="peft-ser-audio-") as spill,
    ):
        audio = RunAudio(
            round(config.data.audio_cache_gb * 1e9), preprocessed(prepared.directory) or spill
        )
        fold_results = [
            _fold_result(config, accelerator, prepared, fold, run, cache, audio) for fold in folds
        ]
        leakage = [prepared.speaker_leakage] if prepared.speaker_leakage else []
        overall = overall_metrics(fold_results, leakage)
        summary = summary_text(config, fold_results, overall)
        if accelerator.is_main_process:
            write_run_results(run, fold_results, overall, prepared.labels, summary)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return RunResult(run.path, fold_results, overall, summary)


def _fold_result(
    config: RunConfig,
    accelerator: Accelerator,
    prepared: PreparedCorpus,
    fold: Fold,
    run: RunDir,
    cache: FeatureCache,
    audio: RunAudio,
) -> dict[str, Any]:
    """A fold's results: read back when the fold is complete, else trained (or resumed)."""
    fold_dir = run.fold(fold.name)
    if fold_dir.complete:
        log.info("fold %s: already complete, read from %s", fold.name, fold_dir.path)
        return fold_dir.read_results()
    bad_audio = BadAudioLog(run.bad_audio)
    return FoldRunner(
        config, accelerator, prepared, fold, fold_dir.path, cache, bad_audio, audio
    ).run()


def feature_store_for(config: RunConfig) -> FeatureStore | None:
    """The persistent feature store a run's cache writes through, or None (memory only)."""
    if not config.feature_cache_persist:
        return None
    return FeatureStore(config.feature_cache_dir, config.feature_cache_budget_gb)


def claim_run_dir(run: RunDir, config: RunConfig, resume: bool) -> None:
    """Write the resolved config; refuse to mix a new run into one that has made progress.

    Progress is a completed epoch (a checkpoint) or a completed fold. A folder whose earlier
    start failed before either (a typo in a path, a missing corpus) is claimed again silently.
    """
    if run.is_run and _has_progress(run):
        if not resume:
            raise RunDirError(
                f"{run.path} already holds a run with saved progress: pass --resume to continue "
                "it, or choose another output_dir"
            )
        try:
            previous = with_defaults(run.read_config_document())  # keys added since
        except ConfigError as error:
            raise RunDirError(
                f"{error}; this run's record is damaged: restore it, or start again in another "
                "output_dir"
            ) from None
        changed = config_differences(previous, config.model_dump(mode="json"))
        if changed:
            raise RunDirError(
                f"{run.path}: cannot resume with a different configuration (changed: "
                f"{', '.join(changed)}); resume with the original settings, or start a new run "
                "in another output_dir"
            )
    elif run.is_run:
        log.info("%s: the earlier start saved no progress; starting afresh", run.path)
    run.write_config(config)


def _has_progress(run: RunDir) -> bool:
    return any(has_checkpoint(fold.path) or fold.complete for fold in run.fold_dirs())


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
