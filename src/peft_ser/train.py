"""Training and evaluation across folds, on one device or many processes (Accelerate).

A run directory is the whole story of a run and the only state `--resume` needs::

    config.yaml                  the resolved configuration (labels from the corpus filled in)
    fold-<name>/checkpoints/     epoch-NNN/: trainable weights + config (model.save), optimiser,
                                 scheduler and RNG state; last.json / best.json point into it
    fold-<name>/model/           the best-dev-epoch model (kept after the fold completes)
    fold-<name>/results.json     written last: its presence marks the fold complete
    fold-<name>/*.csv, *.png     history, test predictions, confusion matrix, learning curves
    tensorboard/<fold>/          TensorBoard scalars per epoch
    bad_audio.csv                files that could not be decoded (and were skipped)
    results.json/.csv, confusion.png, summary.txt   over all folds

Every file is written to a temporary name and renamed into place, and a checkpoint becomes
"the last one" only when ``last.json`` is replaced after the checkpoint is complete, so a run
killed at any instant resumes from its last completed epoch. Checkpoints hold no pickles:
tensors go to safetensors, everything else to JSON.

Randomness comes from three places, all restored on resume: batch order and augmentation
(generators seeded by seed and epoch, see `peft_ser.data`), and torch's global generator
(dropout), saved per process with each checkpoint.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import random
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from matplotlib.figure import Figure
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

from peft_ser.config import DataConfig, FoldSelector, ModelConfig, RunConfig
from peft_ser.data import (
    Batch,
    FeatureBatch,
    FeatureCache,
    LengthBucketSampler,
    UtteranceDataset,
    collate,
    padding_waste,
    seconds_to_samples,
    stack_states,
)
from peft_ser.fileio import write_atomic, write_atomic_with
from peft_ser.manifest import (
    MANIFEST_FILE,
    Fold,
    PreparedCorpus,
    csv_text,
    load_prepared,
    select,
)
from peft_ser.metrics import (
    SCALARS,
    classification_metrics,
    confusion_figure,
    learning_curves_figure,
    summarize,
    uar,
)
from peft_ser.model import CONFIG_FILE, WEIGHTS_FILE, SERModel, build_model

log = logging.getLogger(__name__)

RUN_CONFIG = "config.yaml"
FOLD_RESULTS = "results.json"
BAD_AUDIO = "bad_audio.csv"
_NO_COMPARE = {"progress", "num_workers"}
"""Settings that may change between a run and its resumption without changing its results."""


# ---------------------------------------------------------------------------------------------
# Public entry points


@dataclass
class RunResult:
    """What `train` returns: per-fold results, the pooled and averaged metrics, a summary."""

    run_dir: Path
    folds: list[dict[str, Any]]
    overall: dict[str, Any]
    summary: str


def train(config: RunConfig, resume: bool = False) -> RunResult:
    """Train ``config`` on each selected fold; test at the best dev epoch; write the results.

    With ``resume``, an interrupted run in ``config.output_dir`` continues from the last
    completed epoch of its unfinished fold, and completed folds are read back, not redone.
    Works unchanged under ``accelerate launch`` (every process calls `train`).
    """
    accelerator = _accelerator(config.mixed_precision)
    run_dir = Path(config.output_dir)
    with accelerator.main_process_first():
        prepared = resolve_corpus(config.data)
    config = config.model_copy(
        update={"model": config.model.model_copy(update={"labels": prepared.labels})}
    )
    if accelerator.is_main_process:
        _claim_run_dir(run_dir, config, resume)
        _attach_log_file(run_dir)
    accelerator.wait_for_everyone()
    bad_audio = BadAudioLog(run_dir / BAD_AUDIO)
    cache = FeatureCache()
    fold_results = []
    for fold in select_folds(prepared.folds, config.data.folds):
        fold_dir = fold_directory(run_dir, fold.name)
        if (fold_dir / FOLD_RESULTS).is_file():
            log.info("fold %s: already complete, read from %s", fold.name, fold_dir)
            fold_results.append(json.loads((fold_dir / FOLD_RESULTS).read_text()))
            continue
        runner = FoldRunner(config, accelerator, prepared, fold, fold_dir, cache, bad_audio)
        fold_results.append(runner.run())
    overall = _overall(fold_results, prepared.labels)
    summary = summary_text(config, fold_results, overall)
    if accelerator.is_main_process:
        _write_run_results(run_dir, fold_results, overall, prepared.labels, summary)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return RunResult(run_dir, fold_results, overall, summary)


def evaluate(
    source: str | Path,
    corpus: str | Path | None = None,
    folds: Sequence[FoldSelector] | None = None,
    split: str = "test",
    output_dir: str | Path | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Score a trained run directory, or one saved model directory, on a prepared corpus.

    For a run directory, each completed fold's model is scored on that fold's ``split`` of the
    run's corpus (or of ``corpus``). For a model directory (``model.save`` output), ``corpus``
    is required and the model is scored on ``split`` of each selected fold (default: all).
    Metrics (JSON, CSV) and confusion matrices go to ``output_dir`` (default
    ``<source>/evaluation``); the metrics are also returned.
    """
    source = Path(source)
    accelerator = _accelerator("auto")
    out = Path(output_dir) if output_dir is not None else source / "evaluation"
    jobs = _evaluation_jobs(source, corpus, folds)
    per_fold, pooled_truth, pooled_pred, pooled_gender = [], [], [], []
    for job in jobs:
        model = accelerator.prepare(SERModel.load(job.model_dir)).eval()
        utterances = select(job.prepared, getattr(job.fold, split))
        dataset = UtteranceDataset(utterances, job.prepared.labels)
        sampler = LengthBucketSampler(dataset.lengths(), batch_size, shuffle=False)
        batches = _loader_batches(dataset, sampler, num_workers=0)
        predictions = predict(accelerator, model, batches, None, len(dataset))
        truth = [dataset.label_of(i) for i in predictions.indices]
        genders = [utterances[i].gender for i in predictions.indices]
        metrics = classification_metrics(truth, predictions.predicted, job.prepared.labels, genders)
        metrics["fold"] = job.fold.name
        per_fold.append(metrics)
        pooled_truth += truth
        pooled_pred += predictions.predicted
        pooled_gender += genders
        _save_figure(
            out / f"confusion-{_safe(job.fold.name)}.png",
            confusion_figure(
                metrics["confusion"], job.prepared.labels, f"{split}: {job.fold.name}"
            ),
        )
    labels = jobs[0].prepared.labels
    overall = {
        "pooled": classification_metrics(pooled_truth, pooled_pred, labels, pooled_gender),
        "mean_std": summarize(per_fold),
    }
    result = {"split": split, "folds": per_fold, "overall": overall}
    write_atomic(out / "metrics.json", json.dumps(result, indent=1) + "\n")
    write_atomic(out / "metrics.csv", _metrics_csv(per_fold, overall["mean_std"]))
    _save_figure(
        out / "confusion.png", confusion_figure(overall["pooled"]["confusion"], labels, split)
    )
    return result


def fold_directory(run_dir: Path, fold_name: str) -> Path:
    """Where a run keeps one fold's checkpoints, model and results."""
    return run_dir / f"fold-{_safe(fold_name)}"


def resolve_corpus(data: DataConfig) -> PreparedCorpus:
    """The prepared corpus ``data`` names; prepares it from ``corpus_dir`` when not yet done."""
    direct = Path(data.corpus)
    if (direct / MANIFEST_FILE).is_file():
        return load_prepared(direct)
    prepared_dir = data.prepared_dir or Path("prepared") / data.corpus
    if (prepared_dir / MANIFEST_FILE).is_file():
        return load_prepared(prepared_dir)
    if data.corpus_dir is None:
        raise FileNotFoundError(
            f"no prepared corpus at {direct} or {prepared_dir}: run `peft-ser prepare "
            f"{data.corpus} <corpus dir>` first, or set data.corpus_dir"
        )
    from peft_ser.corpora.prepare import prepare_corpus

    log.info("preparing %s from %s into %s", data.corpus, data.corpus_dir, prepared_dir)
    return prepare_corpus(data.corpus, data.corpus_dir, prepared_dir)


def select_folds(folds: Sequence[Fold], wanted: Sequence[FoldSelector] | None) -> list[Fold]:
    """Folds by 1-based position or by name; an unknown one is an error listing the choices."""
    if wanted is None:
        return list(folds)
    by_name = {fold.name: fold for fold in folds}
    chosen = []
    for selector in wanted:
        if isinstance(selector, int) and 1 <= selector <= len(folds):
            chosen.append(folds[selector - 1])
        elif isinstance(selector, str) and selector in by_name:
            chosen.append(by_name[selector])
        else:
            raise ValueError(
                f"data.folds: no fold {selector!r}; allowed: 1..{len(folds)} "
                f"or one of {list(by_name)}"
            )
    return chosen


# ---------------------------------------------------------------------------------------------
# One fold


@dataclass
class Predictions:
    """Gathered predictions of one split, in dataset index order."""

    indices: list[int]
    predicted: list[int]
    loss: float


class FoldRunner:
    """Trains one fold epoch by epoch, checkpointing each, then tests the best-dev model."""

    def __init__(
        self,
        config: RunConfig,
        accelerator: Accelerator,
        prepared: PreparedCorpus,
        fold: Fold,
        fold_dir: Path,
        cache: FeatureCache,
        bad_audio: BadAudioLog,
    ) -> None:
        self.config, self.accelerator, self.fold, self.dir = config, accelerator, fold, fold_dir
        self.labels = prepared.labels
        self.bad_audio = bad_audio
        crop = seconds_to_samples(config.data.crop_seconds)
        full = seconds_to_samples(config.data.eval_max_seconds)
        self.splits = {
            "train": UtteranceDataset(
                select(prepared, fold.train), self.labels, crop, config.augment, config.seed
            ),
            "dev": UtteranceDataset(select(prepared, fold.dev), self.labels, full),
            "test": UtteranceDataset(select(prepared, fold.test), self.labels, full),
        }
        set_seed(config.seed)
        self.model = _build_seeded(config.model, config.seed)
        self.cached = self._use_cache()
        self.cache = cache
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(
            trainable,
            lr=config.optim.lr,
            betas=config.optim.betas,
            weight_decay=config.optim.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=config.optim.plateau_factor,
            patience=config.optim.plateau_patience,
            min_lr=config.optim.min_lr,
        )
        self.model.to(accelerator.device)
        # The module whose forward runs in training: only the head when states are cached, so
        # that a multi-process wrapper synchronises exactly the parameters that learn.
        self.trained, self.optimizer = accelerator.prepare(
            self.model.head if self.cached else self.model, optimizer
        )
        self.class_weights = _class_weights(self.splits["train"], len(self.labels), config)
        self.history: list[dict[str, float]] = []
        self.best_epoch, self.best_uar = 0, -1.0

    def _use_cache(self) -> bool:
        frozen = not any(p.requires_grad for p in self.model.backbone.parameters())
        if self.config.feature_cache == "on" and not frozen:
            raise ValueError(
                f"feature_cache 'on' needs a frozen backbone; method {self.config.model.method!r}"
                " trains backbone parameters (use 'auto' or 'off')"
            )
        use = self.config.feature_cache == "on" or (self.config.feature_cache == "auto" and frozen)
        if use and self.config.augment.enabled:
            log.info("feature cache on: training uses clean cached states, no augmentation")
        return use

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        start = self._resume() + 1
        main = self.accelerator.is_main_process
        writer = SummaryWriter(self._tensorboard_dir(), purge_step=start) if main else None
        if self.cached:
            self._fill_cache()
        for epoch in range(start, self.config.optim.epochs + 1):
            began = time.perf_counter()
            train_loss, train_uar, waste = self._train_epoch(epoch)
            dev = self._score("dev")
            self.scheduler.step(dev["loss"])
            row = {
                "epoch": epoch,
                "lr": self.optimizer.param_groups[0]["lr"],
                "train_loss": train_loss,
                "train_uar": train_uar,
                "dev_loss": dev["loss"],
                "dev_uar": dev["uar"],
                "dev_accuracy": dev["accuracy"],
                "dev_macro_f1": dev["macro_f1"],
                "padding_waste": waste,
                "seconds": time.perf_counter() - began,
            }
            self.history.append(row)
            if dev["uar"] > self.best_uar:
                self.best_epoch, self.best_uar = epoch, dev["uar"]
            self._checkpoint(epoch)
            if writer is not None:
                for name, value in row.items():
                    if name != "epoch":
                        writer.add_scalar(name, value, epoch)
                writer.flush()
            log.info(
                "fold %s epoch %d/%d: train loss %.4f UAR %.3f | dev loss %.4f UAR %.3f | "
                "lr %.2e | padding %.1f%% | %.1fs",
                self.fold.name, epoch, self.config.optim.epochs, train_loss, train_uar,
                dev["loss"], dev["uar"], row["lr"], 100 * waste, row["seconds"],
            )  # fmt: skip
        if writer is not None:
            writer.close()
        return self._finish()

    def _train_epoch(self, epoch: int) -> tuple[float, float, float]:
        dataset = self.splits["train"]
        dataset.set_epoch(epoch)
        sampler, lengths = self._sampler(
            "train", self.config.data.batch_size, shuffle=True, epoch=epoch
        )
        waste = padding_waste(sampler.global_batches(), lengths)
        self.trained.train()
        bar = tqdm(
            total=len(sampler),
            desc=f"fold {self.fold.name} epoch {epoch}",
            disable=not (self.config.progress and self.accelerator.is_main_process),
            leave=False,
            dynamic_ncols=True,
        )
        loss_sum, weight_sum = 0.0, 0.0
        truth: list[int] = []
        predicted: list[int] = []
        for batch in self._batches("train", sampler):
            if batch is None:
                self._step(None)
                bar.update()
                continue
            logits = self._step(batch)
            item_weights = self.class_weights[batch.labels]
            with torch.no_grad():
                losses = nn.functional.cross_entropy(logits.float(), batch.labels, reduction="none")
            loss_sum += float((losses.cpu() * item_weights).sum())
            weight_sum += float(item_weights.sum())
            truth += batch.labels.tolist()
            predicted += logits.argmax(dim=-1).tolist()
            bar.update()
            running = loss_sum / max(weight_sum, 1e-12)
            bar.set_postfix(
                loss=f"{running:.3f}", uar=f"{uar(truth, predicted):.3f}", refresh=False
            )
        bar.close()
        return loss_sum / max(weight_sum, 1e-12), uar(truth, predicted), waste

    def _step(self, batch: Batch | FeatureBatch | None) -> torch.Tensor:
        """One optimiser step; an empty batch (all files unreadable) still joins gradient sync."""
        weights = self.class_weights.to(self.accelerator.device)
        if batch is None:
            params = [p for p in self.trained.parameters() if p.requires_grad]
            loss = sum(p.sum() * 0.0 for p in params)
            logits = torch.zeros(0, len(self.labels))
        else:
            batch = _to_device(batch, self.accelerator.device)
            with self.accelerator.autocast():
                logits = self._forward(self.trained, batch)
            loss = _weighted_loss(logits.float(), batch.labels, weights)
        self.accelerator.backward(loss)
        if self.config.optim.grad_clip is not None:
            self.accelerator.clip_grad_norm_(self.trained.parameters(), self.config.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return logits.detach().float().cpu()

    def _forward(self, module: nn.Module, batch: Batch | FeatureBatch) -> torch.Tensor:
        if isinstance(batch, FeatureBatch):
            return module(batch.hidden, batch.frame_lengths)
        return module(batch.waveforms, batch.lengths)

    def _score(self, split: str) -> dict[str, Any]:
        dataset = self.splits[split]
        sampler, _ = self._sampler(split, self._eval_batch_size(), shuffle=False, epoch=0)
        self.trained.eval()
        module = self.trained
        predictions = predict(
            self.accelerator,
            module,
            self._batches(split, sampler),
            self.class_weights,
            len(dataset),
        )
        truth = [dataset.label_of(i) for i in predictions.indices]
        genders = [dataset.utterances[i].gender for i in predictions.indices]
        metrics = classification_metrics(truth, predictions.predicted, self.labels, genders)
        metrics["loss"] = predictions.loss
        metrics["predictions"] = predictions
        return metrics

    def _eval_batch_size(self) -> int:
        return self.config.data.eval_batch_size or self.config.data.batch_size

    # -- batches ----------------------------------------------------------------------------

    def _sampler(
        self, split: str, batch_size: int, shuffle: bool, epoch: int
    ) -> tuple[LengthBucketSampler, list[int]]:
        lengths = (
            [self._cached_state(split, i).shape[1] for i in self._cached_items(split)]
            if self.cached
            else self.splits[split].lengths()
        )
        sampler = LengthBucketSampler(
            lengths,
            batch_size,
            shuffle=shuffle,
            bucketing=self.config.data.bucketing,
            pool=self.config.data.bucket_pool,
            seed=self.config.seed,
            num_replicas=self.accelerator.num_processes,
            rank=self.accelerator.process_index,
        )
        sampler.set_epoch(epoch)
        return sampler, lengths

    def _batches(
        self, split: str, sampler: LengthBucketSampler
    ) -> Iterator[Batch | FeatureBatch | None]:
        if not self.cached:
            for batch in _loader_batches(self.splits[split], sampler, self.config.data.num_workers):
                self._report(split, batch.errors)
                yield batch if len(batch) else None
            return
        items = self._cached_items(split)
        dataset = self.splits[split]
        for positions in sampler:
            indices = [items[p] for p in positions]
            yield stack_states(
                [self._cached_state(split, i) for i in indices],
                [dataset.label_of(i) for i in indices],
                indices,
            )

    def _cached_items(self, split: str) -> list[int]:
        dataset = self.splits[split]
        return [
            i
            for i, u in enumerate(dataset.utterances)
            if (u.key, dataset.max_samples) in self.cache
        ]

    def _cached_state(self, split: str, index: int) -> torch.Tensor:
        dataset = self.splits[split]
        return self.cache.get(dataset.utterances[index].key, dataset.max_samples)

    def _fill_cache(self) -> None:
        """Encode every clip not yet cached once, in eval mode, without augmentation."""
        self.cache.bind(_fingerprint(self.model))
        self.model.eval()
        for split, dataset in self.splits.items():
            missing = [
                i
                for i, u in enumerate(dataset.utterances)
                if (u.key, dataset.max_samples) not in self.cache
            ]
            if not missing:
                continue
            clean = UtteranceDataset(
                [dataset.utterances[i] for i in missing], self.labels, dataset.max_samples
            )
            # Every process encodes every clip: each needs all states for its future batches.
            sampler = LengthBucketSampler(clean.lengths(), self._eval_batch_size(), shuffle=False)
            loader = _loader_batches(clean, sampler, self.config.data.num_workers)
            for batch in tqdm(
                loader,
                total=len(sampler),
                desc=f"fold {self.fold.name}: caching {split} states",
                disable=not (self.config.progress and self.accelerator.is_main_process),
                leave=False,
            ):
                self._report(split, [(missing[i], e) for i, e in batch.errors])
                if len(batch) == 0:
                    continue
                batch = _to_device(batch, self.accelerator.device)
                with torch.no_grad(), self.accelerator.autocast():
                    hidden, frames = self.model.encode(batch.waveforms, batch.lengths)
                for row, index in enumerate(batch.indices.tolist()):
                    key = clean.utterances[index].key
                    self.cache.put(key, dataset.max_samples, hidden[:, row, : int(frames[row])])
        log.info("feature cache: %d clips, %.1f MiB", len(self.cache), self.cache.nbytes() / 2**20)

    def _report(self, split: str, errors: Sequence[tuple[int, str]]) -> None:
        utterances = self.splits[split].utterances
        self.bad_audio.add(
            [(utterances[i].key, utterances[i].path, split, reason) for i, reason in errors]
        )

    # -- checkpoints ------------------------------------------------------------------------

    def _checkpoint(self, epoch: int) -> None:
        """Write epoch ``epoch``'s checkpoint, then point last.json (and best.json) at it."""
        checkpoints = self.dir / "checkpoints"
        target = checkpoints / f"epoch-{epoch:03d}"
        accelerator = self.accelerator
        if accelerator.is_main_process and target.exists():
            shutil.rmtree(target)  # a partial checkpoint of a killed run
        accelerator.wait_for_everyone()
        target.mkdir(parents=True, exist_ok=True)
        rank = accelerator.process_index
        _save_tensors(target / f"rng-{rank}.safetensors", _torch_rng_state())
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            self.model.save(target)
            tensors, groups = _flatten_optimizer(self.optimizer.state_dict())
            _save_tensors(target / "optimizer.safetensors", tensors)
            state = {
                "epoch": epoch,
                "history": self.history,
                "best_epoch": self.best_epoch,
                "best_uar": self.best_uar,
                "optimizer_groups": groups,
                "scheduler": self.scheduler.state_dict(),
                "python_rng": _python_rng_state(),
            }
            write_atomic(target / "state.json", json.dumps(state, indent=1) + "\n")
            if self.best_epoch == epoch:
                write_atomic(self.dir / "best.json", json.dumps({"dir": target.name}) + "\n")
            write_atomic(self.dir / "last.json", json.dumps({"dir": target.name}) + "\n")
            self._prune(checkpoints)
        accelerator.wait_for_everyone()

    def _prune(self, checkpoints: Path) -> None:
        keep = {_pointer(self.dir / "last.json"), _pointer(self.dir / "best.json")}
        for path in checkpoints.iterdir():
            if path.name not in keep:
                shutil.rmtree(path)

    def _resume(self) -> int:
        """Restore the last completed epoch's state, if any; return that epoch (0: none)."""
        name = _pointer(self.dir / "last.json")
        if name is None:
            return 0
        source = self.dir / "checkpoints" / name
        state = json.loads((source / "state.json").read_text())
        self.model.load_trainable_state_dict(load_file(source / WEIGHTS_FILE, device="cpu"))
        self.optimizer.load_state_dict(
            _unflatten_optimizer(load_file(source / "optimizer.safetensors"), state)
        )
        self.scheduler.load_state_dict(state["scheduler"])
        self.history = state["history"]
        self.best_epoch, self.best_uar = state["best_epoch"], state["best_uar"]
        rank = self.accelerator.process_index
        _restore_rng(state["python_rng"], source / f"rng-{rank}.safetensors")
        log.info("fold %s: resuming after epoch %d", self.fold.name, state["epoch"])
        return int(state["epoch"])

    # -- the end of a fold ------------------------------------------------------------------

    def _finish(self) -> dict[str, Any]:
        """Test the best-dev-epoch model and write the fold's results (results.json last)."""
        best = self.dir / "checkpoints" / f"epoch-{self.best_epoch:03d}"
        self.model.load_trainable_state_dict(load_file(best / WEIGHTS_FILE, device="cpu"))
        test = self._score("test")
        predictions: Predictions = test.pop("predictions")
        result = {
            "fold": self.fold.name,
            "best_epoch": self.best_epoch,
            "dev_uar": self.best_uar,
            "test": test,
            "history": self.history,
            "bad_audio": len(self.bad_audio),
        }
        if self.accelerator.is_main_process:
            _replace_dir(best, self.dir / "model", keep_source=True)
            self._write_fold_files(test, predictions)
            write_atomic(self.dir / FOLD_RESULTS, json.dumps(result, indent=1) + "\n")
            shutil.rmtree(self.dir / "checkpoints")
            for pointer in ("last.json", "best.json"):
                (self.dir / pointer).unlink()
        self.accelerator.wait_for_everyone()
        log.info(
            "fold %s: best dev UAR %.3f at epoch %d; test UAR %.3f",
            self.fold.name, self.best_uar, self.best_epoch, test["uar"],
        )  # fmt: skip
        return result

    def _write_fold_files(self, test: dict[str, Any], predictions: Predictions) -> None:
        dataset = self.splits["test"]
        rows = [
            (dataset.utterances[i].key, dataset.utterances[i].label, self.labels[p])
            for i, p in zip(predictions.indices, predictions.predicted, strict=True)
        ]
        write_atomic(self.dir / "predictions.csv", csv_text(["key", "label", "predicted"], rows))
        columns = list(self.history[0])
        history_rows = [[row[c] for c in columns] for row in self.history]
        write_atomic(self.dir / "history.csv", csv_text(columns, history_rows))
        title = f"fold {self.fold.name}"
        _save_figure(
            self.dir / "confusion.png", confusion_figure(test["confusion"], self.labels, title)
        )
        _save_figure(self.dir / "learning_curves.png", learning_curves_figure(self.history, title))

    def _tensorboard_dir(self) -> str:
        return str(self.dir.parent / "tensorboard" / self.dir.name)


# ---------------------------------------------------------------------------------------------
# Prediction (shared by training and `evaluate`)


def predict(
    accelerator: Accelerator,
    module: nn.Module,
    batches: Iterable[Batch | FeatureBatch | None],
    class_weights: torch.Tensor | None,
    size: int,
) -> Predictions:
    """Predict every batch on every process, gather, and keep one prediction per item.

    The loss is the class-weighted cross entropy of the training objective (plain when
    ``class_weights`` is None), averaged over items like the training loss.
    """
    local: list[tuple[int, int, float, float]] = []
    with torch.no_grad():
        for batch in batches:
            if batch is None:
                continue
            batch = _to_device(batch, accelerator.device)
            with accelerator.autocast():
                logits = (
                    module(batch.hidden, batch.frame_lengths)
                    if isinstance(batch, FeatureBatch)
                    else module(batch.waveforms, batch.lengths)
                ).float()
            losses = nn.functional.cross_entropy(logits, batch.labels, reduction="none").cpu()
            weights = (
                torch.ones_like(losses)
                if class_weights is None
                else class_weights[batch.labels.cpu()]
            )
            local += zip(
                batch.indices.tolist(),
                logits.argmax(dim=-1).tolist(),
                (losses * weights).tolist(),
                weights.tolist(),
                strict=True,
            )
    gathered = gather_object(local) if accelerator.num_processes > 1 else local
    rows = {row[0]: row for row in gathered}
    ordered = [rows[i] for i in sorted(rows) if i < size]
    weight = sum(r[3] for r in ordered)
    return Predictions(
        indices=[r[0] for r in ordered],
        predicted=[r[1] for r in ordered],
        loss=sum(r[2] for r in ordered) / weight if weight else math.nan,
    )


def _loader_batches(
    dataset: UtteranceDataset, sampler: LengthBucketSampler, num_workers: int
) -> Iterator[Batch]:
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)
    yield from loader


# ---------------------------------------------------------------------------------------------
# Helpers


def _accelerator(mixed_precision: str) -> Accelerator:
    if mixed_precision == "auto":
        if torch.cuda.is_available():
            mixed_precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            mixed_precision = "no"
    return Accelerator(mixed_precision=mixed_precision)


def _build_seeded(config: ModelConfig, seed: int) -> SERModel:
    """Build under the run's seed, so the freshly initialised parts (head, PEFT weights) are the
    same in a run and its resumption."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config)


def _class_weights(dataset: UtteranceDataset, classes: int, config: RunConfig) -> torch.Tensor:
    """Inverse class frequency of the training split, normalised as n / (C · n_c)."""
    counts = torch.bincount(
        torch.tensor([dataset.label_of(i) for i in range(len(dataset))], dtype=torch.long),
        minlength=classes,
    ).float()
    if config.optim.class_weights == "none":
        return torch.ones(classes)
    present = counts > 0
    weights = torch.zeros(classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def _weighted_loss(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    return nn.functional.cross_entropy(logits, labels, weight=weights)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, FeatureBatch):
        return FeatureBatch(
            batch.hidden.to(device),
            batch.frame_lengths.to(device),
            batch.labels.to(device),
            batch.indices,
        )
    return Batch(
        batch.waveforms.to(device),
        batch.lengths.to(device),
        batch.labels.to(device),
        batch.indices,
        batch.errors,
    )


def _fingerprint(model: SERModel) -> str:
    """A digest of the frozen backbone's weights and front-end settings (cache validity)."""
    front_end = model.config.model_dump_json(include={"backbone", "whisper_window"})
    digest = hashlib.sha256(front_end.encode())
    for name, tensor in model.backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def _pointer(path: Path) -> str | None:
    return json.loads(path.read_text())["dir"] if path.is_file() else None


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    buffer = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic_with(path, lambda temporary: save_file(buffer, temporary))


def _save_figure(path: Path, figure: Figure) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    write_atomic(path, buffer.getvalue())


def _replace_dir(source: Path, target: Path, keep_source: bool) -> None:
    """Copy ``source`` to ``target`` through a temporary sibling and a rename."""
    temporary = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    shutil.copytree(source, temporary, ignore=shutil.ignore_patterns("*.json", "rng-*", "opt*"))
    shutil.copy2(source / CONFIG_FILE, temporary / CONFIG_FILE)
    shutil.rmtree(target, ignore_errors=True)
    temporary.rename(target)
    if not keep_source:
        shutil.rmtree(source)


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[Any]]:
    """Split an optimiser state_dict into tensors (safetensors) and JSON-ready groups."""
    tensors = {
        f"{param}.{name}": value if torch.is_tensor(value) else torch.tensor(value)
        for param, slots in state["state"].items()
        for name, value in slots.items()
    }
    return tensors, state["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> dict[str, Any]:
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        param, name = key.split(".", 1)
        slots.setdefault(int(param), {})[name] = value
    return {"state": slots, "param_groups": state["optimizer_groups"]}


def _torch_rng_state() -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return states


def _python_rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, np.asarray(keys).tolist(), position, has_gauss, cached],
    }


def _restore_rng(python_state: dict[str, Any], torch_file: Path) -> None:
    version, internal, gauss = python_state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = python_state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    states = load_file(torch_file)
    torch.set_rng_state(states["cpu"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all([states[f"cuda{i}"] for i in range(torch.cuda.device_count())])


class BadAudioLog:
    """Files that failed to load, kept in memory and rewritten whole (atomically) on change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[tuple[str, str], tuple[str, str, str, str]] = {}
        if path.is_file():
            lines = path.read_text().splitlines()[1:]
            for row in csv.reader(lines):
                self.rows[(row[0], row[2])] = (row[0], row[1], row[2], row[3])

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        new = {(r[0], r[2]): r for r in rows if (r[0], r[2]) not in self.rows}
        if not new:
            return
        for _key, _path, split, reason in new.values():
            log.warning("skipping unreadable audio (%s split): %s", split, reason)
        self.rows.update(new)
        write_atomic(
            self.path, csv_text(["key", "path", "split", "reason"], list(self.rows.values()))
        )


# ---------------------------------------------------------------------------------------------
# The run directory


def _claim_run_dir(run_dir: Path, config: RunConfig, resume: bool) -> None:
    """Write the resolved config; refuse to mix a new run into an old one."""
    path = run_dir / RUN_CONFIG
    document = config.model_dump(mode="json")
    if path.is_file():
        if not resume:
            raise FileExistsError(
                f"{run_dir} already holds a run: pass --resume to continue it, "
                "or choose another output_dir"
            )
        previous = yaml.safe_load(path.read_text())
        changed = _differences(previous, document)
        if changed:
            raise ValueError(
                f"{run_dir}: cannot resume with a different configuration ({', '.join(changed)})"
            )
    write_atomic(path, yaml.safe_dump(document, sort_keys=False))


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            diff
            for key in sorted(set(old) | set(new))
            if key not in _NO_COMPARE
            for diff in _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [prefix.rstrip(".")] if old != new else []


def _attach_log_file(run_dir: Path) -> None:
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    package = logging.getLogger("peft_ser")
    package.addHandler(handler)
    package.setLevel(min(package.level or logging.INFO, logging.INFO))


def _overall(fold_results: Sequence[dict[str, Any]], labels: Sequence[str]) -> dict[str, Any]:
    """Mean ± std of the fold scalars, and the metrics of all folds' test predictions pooled."""
    tests = [fold["test"] for fold in fold_results]
    pooled = np.sum([np.asarray(t["confusion"]) for t in tests], axis=0)
    return {"mean_std": summarize(tests), "pooled_confusion": pooled.astype(int).tolist()}


def _metrics_csv(per_fold: Sequence[dict[str, Any]], mean_std: dict[str, dict[str, float]]) -> str:
    columns = ["fold", "n", *SCALARS]
    rows = [[m.get(c, "") for c in columns] for m in per_fold]
    for stat in ("mean", "std"):
        rows.append([stat, "", *(mean_std.get(c, {}).get(stat, "") for c in SCALARS)])
    return csv_text(columns, rows)


def _write_run_results(
    run_dir: Path,
    fold_results: Sequence[dict[str, Any]],
    overall: dict[str, Any],
    labels: Sequence[str],
    summary: str,
) -> None:
    tests = [{**fold["test"], "fold": fold["fold"]} for fold in fold_results]
    write_atomic(run_dir / "results.csv", _metrics_csv(tests, overall["mean_std"]))
    _save_figure(
        run_dir / "confusion.png",
        confusion_figure(overall["pooled_confusion"], labels, "all folds (test)"),
    )
    write_atomic(run_dir / "summary.txt", summary)
    document = {"folds": list(fold_results), "overall": overall}
    write_atomic(run_dir / "results.json", json.dumps(document, indent=1) + "\n")


def summary_text(
    config: RunConfig, fold_results: Sequence[dict[str, Any]], overall: dict[str, Any]
) -> str:
    """The one-screen report printed at the end of a run."""
    lines = [
        f"run: {config.output_dir}",
        f"model: {config.model.backbone} / {config.model.method}"
        f" | corpus: {config.data.corpus} | epochs: {config.optim.epochs}",
        "",
        f"{'fold':<12}{'best ep':>8}{'dev UAR':>9}{'UAR':>8}{'acc':>8}{'F1':>8}{'gap F−M':>9}",
    ]
    for fold in fold_results:
        test = fold["test"]
        gap = f"{test['uar_gap']:+.3f}" if "uar_gap" in test else "—"
        lines.append(
            f"{fold['fold']:<12}{fold['best_epoch']:>8}{fold['dev_uar']:>9.3f}{test['uar']:>8.3f}"
            f"{test['accuracy']:>8.3f}{test['macro_f1']:>8.3f}{gap:>9}"
        )
    lines.append("")
    for name, stats in overall["mean_std"].items():
        lines.append(f"{name:<32}{stats['mean']:.3f} ± {stats['std']:.3f}")
    if any(fold.get("bad_audio") for fold in fold_results):
        lines.append(f"unreadable audio skipped: see {Path(config.output_dir) / BAD_AUDIO}")
    lines.append(f"results: {Path(config.output_dir) / 'results.json'}")
    return "\n".join(lines) + "\n"


@dataclass
class _EvaluationJob:
    model_dir: Path
    model_config: ModelConfig
    prepared: PreparedCorpus
    fold: Fold


def _evaluation_jobs(
    source: Path,
    corpus: str | Path | None,
    folds: Sequence[FoldSelector] | None,
) -> list[_EvaluationJob]:
    """What to score: each completed fold of a run, or one model on the selected folds."""
    if (source / RUN_CONFIG).is_file():
        run = RunConfig.model_validate(yaml.safe_load((source / RUN_CONFIG).read_text()))
        data = run.data if corpus is None else run.data.model_copy(update={"corpus": str(corpus)})
        prepared = resolve_corpus(data)
        chosen = select_folds(prepared.folds, folds if folds is not None else run.data.folds)
        jobs = [
            _EvaluationJob(fold_directory(source, f.name) / "model", run.model, prepared, f)
            for f in chosen
            if (fold_directory(source, f.name) / "model" / WEIGHTS_FILE).is_file()
        ]
        if not jobs:
            raise FileNotFoundError(f"{source}: no completed fold with a saved model")
        return jobs
    if not (source / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{source}: neither a run directory nor a saved model")
    if corpus is None:
        raise ValueError("evaluating a model directory needs a prepared corpus (--corpus)")
    model_config = ModelConfig.model_validate_json((source / CONFIG_FILE).read_text())
    prepared = resolve_corpus(DataConfig.model_validate({"corpus": str(corpus)}))
    if list(prepared.labels) != list(model_config.labels):
        raise ValueError(
            f"model labels {model_config.labels} differ from the corpus's {prepared.labels}"
        )
    return [
        _EvaluationJob(source, model_config, prepared, f)
        for f in select_folds(prepared.folds, folds)
    ]
