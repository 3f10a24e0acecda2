"""One fold: train epoch by epoch with a checkpoint after each, then test the best-dev model.

A step whose loss or gradient is not finite is not applied (see `guards`), so the weights, the
checkpoints and the saved model stay finite; a run that does not learn is flagged in the log and
in the fold's results.

Each epoch runs with torch's generators seeded from ``(seed, epoch)`` alone (`epoch_streams`):
dropout then draws the same numbers whatever ran before the epoch (encoding clips that the
feature cache did not hold yet, or nothing in a resumed process), so a warm-cache run equals
a cold one and a resumed run the uninterrupted one, bit for bit at the same thread count.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn

from peft_ser.config import ModelConfig, RunConfig
from peft_ser.config.selection import metric_label
from peft_ser.data.audio_cache import RunAudio
from peft_ser.data.dataset import Batch, UtteranceDataset, seconds_to_samples
from peft_ser.data.manifest import Fold, PreparedCorpus, csv_text
from peft_ser.data.sampler import padding_waste
from peft_ser.data.states import FeatureBatch, FeatureCache
from peft_ser.evaluation.metrics import fold_title, learning_curves_figure
from peft_ser.evaluation.objectives import Objective, class_counts
from peft_ser.evaluation.results import BadAudioLog, json_text, replace_dir, save_figure
from peft_ser.evaluation.scoring import Outputs, forward, to_device
from peft_ser.models.ser_model import (
    WEIGHTS_FILE,
    FromStates,
    SERModel,
    build_model,
    read_weights,
)
from peft_ser.runs.layout import FoldDir
from peft_ser.training.batches import BatchSource, usable_splits, uses_cache
from peft_ser.training.checkpoint import FoldCheckpoints, Progress
from peft_ser.training.guards import NonFiniteSteps, collapse_warnings
from peft_ser.training.reporting import FoldReporters
from peft_ser.training.schedule import build_scheduler, early_stop, per_step, selected_epoch
from peft_ser.training.tracker import EpochTracker
from peft_ser.utils.fileio import write_atomic
from peft_ser.utils.progress import progress_bar

log = logging.getLogger(__name__)


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
        audio: RunAudio | None = None,
    ) -> None:
        self.config, self.accelerator, self.fold = config, accelerator, fold
        self.folder = FoldDir(fold_dir)
        self.labels = prepared.labels
        self.bad_audio = bad_audio
        crop = seconds_to_samples(config.data.crop_seconds)
        full = seconds_to_samples(config.data.eval_max_seconds)
        chosen, self.left_out = usable_splits(prepared, fold, config.model.task or "categorical")
        self.splits = {
            "train": UtteranceDataset(
                chosen["train"], self.labels, crop, config.augment, config.seed, audio
            ),
            "dev": UtteranceDataset(chosen["dev"], self.labels, full, decoded=audio),
            "test": UtteranceDataset(chosen["test"], self.labels, full, decoded=audio),
        }
        set_seed(config.seed)
        self.model = _build_seeded(config.model, config.seed)
        self.model.backbone.group_padding = config.data.group_padding
        cached = uses_cache(config, self.model)
        self.source = BatchSource(
            config, accelerator, self.splits, cache if cached else None, self._report
        )
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(
            trainable,
            lr=config.optim.lr,
            betas=config.optim.betas,
            weight_decay=config.optim.weight_decay,
        )
        self.accumulate = config.optim.grad_accum_steps
        self.step_batch = config.data.batch_size * self.accumulate
        steps = math.ceil(len(self.splits["train"]) / self.step_batch)
        self.scheduler = build_scheduler(optimizer, config.optim, steps)
        self.model.to(accelerator.device)
        # The module whose forward runs in training: only the head when a frozen backbone's
        # states are cached, the layers above the cached ones and the head under
        # model.tune_layers, so that a multi-process wrapper synchronises exactly the
        # parameters that learn.
        self.trained, self.optimizer = accelerator.prepare(self._trained_part(), optimizer)
        counts = class_counts(
            self.splits["train"], config.optim, config.model.task == "distribution"
        )
        self.class_weights = _class_weights(counts, config)
        self.objective = Objective(
            self.model.layout, self.labels, config.model.attributes, config.optim,
            self.class_weights, self.splits,
        )  # fmt: skip
        self.checkpoints = FoldCheckpoints(fold_dir, accelerator)
        self.nonfinite = NonFiniteSteps(
            fold.name, config.optim.max_nonfinite_steps, config.optim.lr
        )
        self.progress = Progress()
        self.stopped: dict[str, Any] | None = None

    def _trained_part(self) -> nn.Module:
        if not self.source.cached:
            return self.model
        return FromStates(self.model) if self.source.below else self.model.head

    # -- the loop ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        self.progress = self.checkpoints.restore(self.model, self.optimizer, self.scheduler)
        if self.progress.epoch:
            log.info("fold %s: resuming after epoch %d", self.fold.name, self.progress.epoch)
        start = self.progress.epoch + 1
        main = self.accelerator.is_main_process
        reporters = FoldReporters(
            self.config, self.folder, self.fold.name, self.progress.history, main
        )
        try:
            if self.source.cached:
                self.source.fill_cache(self.model, self._eval_batch_size(), self.fold.name)
            self._train_epochs(start, reporters)
            result = self._finish()
        except BaseException:
            reporters.finish(None)
            raise
        reporters.finish(result)
        return result

    def _train_epochs(self, start: int, reporters: FoldReporters) -> None:
        warned = False
        for epoch in range(start, self.config.optim.epochs + 1):
            if self._stops_early():
                break
            with epoch_streams(self.config.seed, epoch, self.accelerator.device):
                row = self._epoch(epoch)
            self.progress.epoch = epoch
            self.progress.history.append(row)
            last = self.config.optim.select == "last"
            self.progress.best_epoch, self.progress.best_uar = selected_epoch(
                self.progress.history, self.objective.selection, last
            )
            self.checkpoints.save(self.progress, self.model, self.optimizer, self.scheduler)
            reporters.epoch(row)
            self._log_epoch(row)
            warnings = collapse_warnings(self.progress.history, len(self.labels))
            if warnings and not warned:
                for warning in warnings:
                    log.warning("fold %s: %s", self.fold.name, warning)
                warned = True
        self._stops_early()  # after the last epoch too, so the results say why it stopped

    def _stops_early(self) -> bool:
        """Whether the dev score has stalled for ``optim.early_stopping_patience`` epochs; the
        first time it has, the stop is logged and kept for the fold's results."""
        patience = self.config.optim.early_stopping_patience
        reason = early_stop(self.progress.history, self.objective.selection, patience)
        if reason is None or self.progress.epoch >= self.config.optim.epochs:
            return False
        if self.stopped is None:
            self.stopped = {"epoch": self.progress.epoch, "reason": reason}
            log.info(
                "fold %s: stopping early after epoch %d of %d: %s",
                self.fold.name, self.progress.epoch, self.config.optim.epochs, reason,
            )  # fmt: skip
        return True

    def _epoch(self, epoch: int) -> dict[str, Any]:
        began = time.perf_counter()
        rate = self.optimizer.param_groups[0]["lr"]  # the rate this epoch trains at
        train_loss, train_metrics, waste = self._train_epoch(epoch)
        dev = self._score("dev")
        if self.config.optim.schedule == "plateau":
            if math.isfinite(dev["loss"]):  # an empty dev split has no loss to plateau on
                self.scheduler.step(dev["loss"])
        elif not per_step(self.config.optim):  # else moved by every optimiser step
            self.scheduler.step()
        return {
            "epoch": epoch,
            "lr": rate,
            "train_loss": train_loss,
            **self.objective.row("train", train_metrics),
            "dev_loss": dev["loss"],
            **self.objective.row("dev", dev),
            "padding_waste": waste,
            "skipped_steps": self.nonfinite.count,
            "seconds": time.perf_counter() - began,
        }

    def _log_epoch(self, row: dict[str, Any]) -> None:
        """One line per epoch: the losses and the selection metric (on train where the
        running tracker computes it: UAR, not macro-F1)."""
        metric = self.objective.selection
        split = {s: _scored(row, s, metric) for s in ("train", "dev")}
        log.info(
            "fold %s epoch %d/%d: train loss %.4f%s | dev loss %.4f%s | lr %.2e | padding %.1f%% "
            "| %.1fs",
            self.fold.name, row["epoch"], self.config.optim.epochs, row["train_loss"],
            split["train"], row["dev_loss"], split["dev"], row["lr"], 100 * row["padding_waste"],
            row["seconds"],
        )  # fmt: skip

    def _train_epoch(self, epoch: int) -> tuple[float, dict[str, float], float]:
        self.splits["train"].set_epoch(epoch)
        sampler, lengths = self.source.sampler(
            "train", self.step_batch, shuffle=True, epoch=epoch, accumulate=self.accumulate
        )
        waste = self._padding_waste(sampler.micro_batches(), lengths)
        self.trained.train()
        bar = progress_bar(
            self.config.progress and self.accelerator.is_main_process,
            total=len(sampler),
            desc=f"fold {self.fold.name} epoch {epoch}",
            leave=False,
        )
        tracker = EpochTracker(self.objective)
        batches = self.source.batches("train", sampler)
        for group in _groups(batches, sampler.step_sizes()):
            bar.update(len(group))
            outputs = self._step(group, epoch)
            if per_step(self.config.optim):
                self.scheduler.step()
            if outputs is None:
                continue
            for batch, logits in zip(group, outputs, strict=True):
                if batch is not None:
                    tracker.add(logits, batch)
            bar.set_postfix(tracker.postfix(), refresh=False)
        bar.close()
        return tracker.loss(), tracker.metrics(), waste

    def _padding_waste(self, batches: list[list[int]], lengths: list[int]) -> float:
        """The share of the frames the training batches compute that are padding: of the
        layers' frames in their groups of similar length (`data.group_padding`) where the
        encoder runs, of the cached states' frames where a frozen backbone's states feed the
        head alone (which runs on the whole batch)."""
        if self.source.cached and not self.source.below:
            return padding_waste(batches, lengths)
        frames = self.model.backbone.frame_counts(torch.tensor(lengths, dtype=torch.long))
        return padding_waste(batches, frames.tolist(), self.config.data.group_padding)

    def _step(
        self, group: list[Batch | FeatureBatch | None], epoch: int
    ) -> list[torch.Tensor] | None:
        """One optimiser step over a group of micro-batches (one, without accumulation);
        returns each one's logits, or None when the step was refused.

        With several, each micro-batch's loss is weighted by its share of the group's items
        (their class weights under a weighted cross entropy), so the summed gradient is the
        whole group's, as one batch would give it; gradients are synchronised across processes
        on the last one only. An empty batch (every file unreadable) still joins the
        synchronisation. A step whose loss or gradient is not finite on any process is refused
        on every process (the decision is reduced across processes, so they stay in step).
        """
        shares = (
            _shares([self.objective.batch_weight(b) for b in group]) if len(group) > 1 else [None]
        )
        losses, outputs = [], []
        for index, (batch, share) in enumerate(zip(group, shares, strict=True)):
            last = index == len(group) - 1
            with nullcontext() if last else self.accelerator.no_sync(self.trained):
                logits, loss = self._forward(batch)
                if share is not None:
                    loss = loss * share
                self.accelerator.backward(loss)
            losses.append(loss.detach())
            outputs.append(logits.detach().float().cpu())
        norm = self._gradient_norm()
        problem = self._nonfinite(torch.stack(losses).sum(), norm)
        if problem is not None:
            self.optimizer.zero_grad(set_to_none=True)
            indices = [i for b in group if b is not None for i in b.indices.tolist()]
            self.nonfinite.refuse(epoch, problem, self._keys("train", indices))
            return None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return outputs

    def _forward(self, batch: Batch | FeatureBatch | None) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch's logits and loss (of an empty batch: none, and a zero loss that
        touches every trained parameter)."""
        if batch is None:
            params = [p for p in self.trained.parameters() if p.requires_grad]
            loss = sum(p.sum() * 0.0 for p in params)
            return torch.zeros(0, self.model.layout.width), torch.as_tensor(loss)
        batch = to_device(batch, self.accelerator.device)
        with self.accelerator.autocast():
            logits = forward(self.trained, batch)
        return logits, self.objective.loss(logits.float(), batch, "train")

    def _gradient_norm(self) -> torch.Tensor:
        """The gradients' total norm (unscaled under fp16), clipped to ``optim.grad_clip`` when
        that is set; an infinite limit measures without clipping."""
        limit = self.config.optim.grad_clip
        params = [p for p in self.trained.parameters() if p.requires_grad]
        return torch.as_tensor(
            self.accelerator.clip_grad_norm_(params, math.inf if limit is None else limit)
        )

    def _nonfinite(self, loss: torch.Tensor, norm: torch.Tensor) -> str | None:
        """What was not finite in this step on any process, or None.

        Under fp16 a gradient overflow is the loss scaler's to handle: it skips that step and
        lowers its scale, as it is built to, so only the loss is checked then.
        """
        gradient_is_ours = self.accelerator.scaler is None
        flags = torch.tensor(
            [not bool(torch.isfinite(loss)), gradient_is_ours and not bool(torch.isfinite(norm))],
            device=self.accelerator.device,
            dtype=torch.float32,
        )
        if self.accelerator.num_processes > 1:
            flags = self.accelerator.reduce(flags, reduction="sum")
        if flags[0] > 0:
            return "loss"
        if flags[1] > 0:
            return "gradient"
        return None

    def _score(self, split: str) -> dict[str, Any]:
        sampler, _ = self.source.sampler(split, self._eval_batch_size(), shuffle=False, epoch=0)
        self.trained.eval()
        batches = self.source.batches(split, sampler)
        metrics = self.objective.score(
            self.accelerator, self.trained, batches, split, interval=split == "test"
        )
        predictions: Outputs = metrics["predictions"]
        if predictions.nonfinite:
            log.warning(
                "fold %s %s: non-finite model output for %s (left out of the metrics, counted "
                "in non_finite_outputs)",
                self.fold.name, split, ", ".join(self._keys(split, predictions.nonfinite)),
            )  # fmt: skip
        return metrics

    def _keys(self, split: str, indices: list[int]) -> list[str]:
        utterances = self.splits[split].utterances
        return [utterances[i].key for i in indices]

    def _eval_batch_size(self) -> int:
        return self.config.data.eval_batch_size or self.config.data.batch_size

    def _report(self, split: str, errors: Sequence[tuple[int, str]]) -> None:
        utterances = self.splits[split].utterances
        self.bad_audio.add(
            [(utterances[i].key, utterances[i].path, split, reason) for i, reason in errors]
        )

    # -- the end of a fold ------------------------------------------------------------------

    def _finish(self) -> dict[str, Any]:
        """Test the best-dev-epoch model and write the fold's results (the results file last:
        it marks the fold complete)."""
        best = self.checkpoints.best(self.progress)
        self.model.load_trainable_state_dict(read_weights(best / WEIGHTS_FILE))
        test = self._score("test")
        predictions: Outputs = test.pop("predictions")
        result = {
            "fold": self.fold.name,
            "best_epoch": self.progress.best_epoch,
            **({"stopped_early": self.stopped} if self.stopped else {}),
            f"dev_{self.objective.selection}": self.progress.best_uar,
            "test": test,
            "history": self.progress.history,
            **({"left_out": self.left_out} if self.left_out else {}),
            "bad_audio": len(self.bad_audio),
            "skipped_steps": self.nonfinite.count,
            "warnings": collapse_warnings(self.progress.history, len(self.labels)),
        }
        if self.accelerator.is_main_process:
            replace_dir(best, self.folder.model, keep_source=True)
            self._write_fold_files(test, predictions)
            write_atomic(self.folder.results, json_text(result))
            self.checkpoints.remove()
        self.accelerator.wait_for_everyone()
        metric = self.objective.selection
        name = metric_label(metric)
        rule = "the last" if self.config.optim.select == "last" else f"best dev {name}"
        log.info(
            "fold %s: tested epoch %d (%s): dev %s %.3f; test %s %.3f",
            self.fold.name, self.progress.best_epoch, rule, name, self.progress.best_uar, name,
            test[metric],
        )  # fmt: skip
        return result

    def _write_fold_files(self, test: dict[str, Any], predictions: Outputs) -> None:
        title = fold_title(self.fold.name)
        self.objective.write_split_files(
            self.folder.path, "test", test, predictions, f"{title} (test)"
        )
        history = self.progress.history
        columns = list(history[0])
        write_atomic(
            self.folder.history, csv_text(columns, [[r[c] for c in columns] for r in history])
        )
        curves = learning_curves_figure(
            history, title, self.objective.selection, self.progress.best_epoch
        )
        save_figure(self.folder.learning_curves, curves)


@contextmanager
def epoch_streams(seed: int, epoch: int, device: torch.device) -> Iterator[None]:
    """Run an epoch with torch's generators (CPU and ``device``) seeded from ``(seed, epoch)``,
    restoring the caller's states afterwards.

    Dropout draws from torch's global generator, which anything may have drawn from before
    (a `DataLoader` draws a seed from it whenever an iterator is created, as filling the feature
    cache does once per split, and only when the cache misses). Seeding per epoch makes the
    epoch's numbers a function of ``(seed, epoch)``, so a checkpoint needs no generator state.
    Batch order and augmentation have their own generators (`peft_ser.data.sampler`,
    `peft_ser.data.dataset`).
    """
    derived = np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(int(derived))
        yield


def _scored(row: dict[str, Any], split: str, metric: str) -> str:
    """`` UAR 0.512``: a split's selection metric in an epoch's log line, if its history row
    holds it and it is not the loss the line shows anyway."""
    key = f"{split}_{metric}"
    return f" {metric_label(metric)} {row[key]:.3f}" if key in row and metric != "loss" else ""


def _groups(
    batches: Iterable[Batch | FeatureBatch | None], sizes: Sequence[int]
) -> Iterator[list[Batch | FeatureBatch | None]]:
    """``batches`` in consecutive groups of ``sizes``: the micro-batches of each step."""
    iterator = iter(batches)
    for size in sizes:
        yield [next(iterator) for _ in range(size)]


def _shares(weights: Sequence[float]) -> list[float]:
    """Each micro-batch's share of its step's total weight (equal shares when it has none)."""
    total = sum(weights)
    if total <= 0:
        return [1.0 / len(weights)] * len(weights)
    return [weight / total for weight in weights]


def _build_seeded(config: ModelConfig, seed: int) -> SERModel:
    """Build under the run's seed, so the freshly initialised parts (head, PEFT weights) are the
    same in a run and its resumption."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config)


def _class_weights(counts: torch.Tensor, config: RunConfig) -> torch.Tensor:
    """Inverse class frequency of the training split, normalised as n / (C · n_c), from its
    class ``counts`` (`class_counts`)."""
    classes = counts.shape[0]
    if config.optim.class_weights == "none":
        return torch.ones(classes)
    present = counts > 0
    weights = torch.zeros(classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights
