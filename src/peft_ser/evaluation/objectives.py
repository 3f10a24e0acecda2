"""The task-specific side of training a fold: its loss, its running training statistics, the
scores of a whole split, the columns of its history and the files of its test predictions.

`FoldRunner` calls one `Objective` whatever the task (see `peft_ser.models.tasks`):

* ``categorical``: class-weighted cross entropy; UAR selects the best epoch, and a split is
  scored by `classification_metrics` (UAR, accuracy, macro-F1, fairness).
* ``attributes``: CCC or MSE loss on the attribute outputs; mean CCC selects the best epoch,
  and a split is scored by `regression_metrics` (CCC, Pearson, RMSE per attribute).
* ``multitask``: both losses (the attribute one weighted); both sets of metrics, and
  ``score`` = (UAR + mean CCC) / 2 selects the best epoch.
* ``distribution``: the class-weighted KL divergence to the annotators' vote shares (shaped by
  ``optim.distribution_temperature`` and ``distribution_smoothing``); the lowest dev ``jsd``
  selects the best epoch (`LOWER_IS_BETTER`), and a split is scored by `distribution_metrics`
  (``jsd``, ``kld``, against the shares as the annotators gave them) and, on its items with a
  majority label, by `classification_metrics` (``n_labelled`` of them).

Those selections are ``optim.select_on: auto``; the option picks any other metric the task
scores on dev, or the dev loss (`peft_ser.config.selection`).

Attribute targets and vote shares are looked up by the batch's dataset indices, so batches,
samplers and the feature cache carry class labels only (`NO_LABEL` for an item without one)
and work unchanged for every task.

`Objective.score` is the one way a model is scored on utterances: the fold loop scores its dev
and test splits with it, and `score_utterances` (a saved model on any utterances, for
`evaluate` and the cross-corpus matrix) calls it too, so every path reports the same metrics
from the same outputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from torch import nn

from peft_ser.config import OptimConfig
from peft_ser.config.selection import LOWER_IS_BETTER, history_metrics, selection_metric
from peft_ser.data.dataset import NO_LABEL, Batch, UtteranceDataset
from peft_ser.data.manifest import Utterance, csv_text
from peft_ser.data.sampler import LengthBucketSampler
from peft_ser.data.states import FeatureBatch
from peft_ser.evaluation.metrics import (
    attribute_scatter_figure,
    classification_metrics,
    confusion_figure,
    distribution_metrics,
    regression_metrics,
)
from peft_ser.evaluation.results import save_figure
from peft_ser.evaluation.scoring import Outputs, gather_outputs, loader_batches
from peft_ser.models.tasks import (
    OutputLayout,
    TaskError,
    attribute_loss,
    distribution_loss,
    item_weights,
    shape_targets,
    usable,
    vote_shares,
    weighted_cross_entropy,
)
from peft_ser.runs.layout import ATTRIBUTES_PLOT, CONFUSION, PREDICTIONS
from peft_ser.utils.fileio import write_atomic


def improves(metric: str, value: float, best: float | None) -> bool:
    """Whether a dev ``value`` of ``metric`` beats ``best`` (None, or not finite: no best yet):
    by falling for the loss and the divergences (`LOWER_IS_BETTER`), else by rising. A value
    that is not finite (the divergence of an empty dev split) never does."""
    if not math.isfinite(value):
        return False
    if best is None or not math.isfinite(best):
        return True
    return value < best if metric in LOWER_IS_BETTER else value > best


def scored_task(layout: OutputLayout, votes: bool) -> str:
    """The task an objective trains or scores: the model's, except that a distribution model
    scored without ``votes`` is scored as a categorical one (on majority labels)."""
    return "categorical" if layout.task == "distribution" and not votes else layout.task


def class_counts(dataset: UtteranceDataset, optim: OptimConfig, distribution: bool) -> torch.Tensor:
    """How many items of ``dataset`` each class has: its majority labels counted, or for the
    ``distribution`` task its training targets' summed shares (a soft count, which gives each
    class weight what a hard count gives it for one-hot targets)."""
    if distribution:
        shares = share_matrix(dataset, "train")
        targets = shape_targets(
            shares, optim.distribution_temperature, optim.distribution_smoothing
        )
        return targets.sum(dim=0).float()
    labels = torch.tensor([dataset.label_of(i) for i in range(len(dataset))], dtype=torch.long)
    return torch.bincount(labels, minlength=len(dataset.label_names)).float()


def share_matrix(dataset: UtteranceDataset, split: str) -> torch.Tensor:
    """The vote shares ``[N, C]`` of the items of ``split`` (`vote_shares` over the dataset's
    labels); `TaskError` when one has none (`usable` leaves those out first)."""
    labels = dataset.label_names
    rows = [vote_shares(u.votes, labels) for u in dataset.utterances]
    missing = [u.key for u, row in zip(dataset.utterances, rows, strict=True) if row is None]
    if missing:
        raise TaskError(
            f"{split}: {len(missing)} utterances have no votes on {labels} (first "
            f"{missing[:3]}); the distribution task cannot score them"
        )
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(labels))


class Objective:
    """Loss, statistics and scores of one task over a fold's splits.

    ``labels`` name the class ids of the splits' datasets; ``columns`` are the model's logit
    columns of those classes, in their order (default: every column, the model's classes being
    ``labels``), so a model can be scored on a subset of its classes, choosing among them only.
    Attribute values are scored for ``attributes``; with none, only the classes are (as the
    cross-corpus matrix scores a multitask model). A distribution model is trained and scored
    on its splits' vote shares unless ``votes`` is false (then on their majority labels, as
    a categorical model is: the cross-corpus matrix scores every model so).
    """

    def __init__(
        self,
        layout: OutputLayout,
        labels: list[str],
        attributes: list[str],
        optim: OptimConfig,
        class_weights: torch.Tensor,
        splits: dict[str, UtteranceDataset],
        columns: list[int] | None = None,
        votes: bool = True,
    ) -> None:
        self.layout, self.labels, self.attributes = layout, labels, attributes
        self.kind, self.weight = optim.attribute_loss, optim.attribute_weight
        self.select_on = optim.select_on
        self.temperature = optim.distribution_temperature
        self.smoothing = optim.distribution_smoothing
        self.class_weights = class_weights
        self.splits = splits
        self.columns = columns
        self.targets = {name: self._ratings(dataset) for name, dataset in splits.items()}
        self.task = scored_task(layout, votes)
        self.distribution = self.task == "distribution"
        voted = splits if self.distribution else {}
        self.shares = {name: share_matrix(dataset, name) for name, dataset in voted.items()}

    def shaped(self, split: str, indices: torch.Tensor | list[int]) -> torch.Tensor:
        """The training targets of items ``indices`` of ``split``: their vote shares shaped
        by the temperature and smoothing (`shape_targets`)."""
        return shape_targets(self.shares[split][indices], self.temperature, self.smoothing)

    def outputs(self, rows: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The class logits ``[B, C]`` (of ``labels``) and attribute values ``[B, A]`` in a
        model's output rows; None for what this objective does not score."""
        logits = self.layout.logits(rows)
        if logits is not None and self.columns is not None:
            logits = logits[:, self.columns]
        return logits, self.layout.values(rows) if self.attributes else None

    def batch_weight(self, batch: Batch | FeatureBatch | None) -> float:
        """What a batch's mean training loss is worth in a mean over batches: the sum of its
        items' class weights under the class-weighted cross entropy alone (its mean's
        denominator), else its item count (an empty batch: 0)."""
        if batch is None:
            return 0.0
        if self.distribution:
            targets = self.shaped("train", batch.indices.cpu())
            return float(item_weights(targets, self.class_weights).sum())
        cross_entropy_only = self.layout.task == "categorical" or not self.attributes
        if self.layout.logits_width and cross_entropy_only:
            return float(self.class_weights[batch.labels.cpu()].sum())
        return float(len(batch))

    @property
    def selection(self) -> str:
        """The dev metric that picks the best epoch and stops early: ``optim.select_on``, by
        default the task's (``uar``, ``ccc``, ``score`` or ``jsd``); `improves` knows which
        way is better."""
        return selection_metric(self.select_on, self.task, self.attributes)

    def class_losses(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor | list[int],
        split: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each item's weighted class loss and its weight (a set's loss is Σ losses / Σ
        weights): the cross entropy of its label, or the KL divergence to its target."""
        if self.distribution:
            targets = self.shaped(split, indices).to(logits.device)
            losses = distribution_loss(logits, targets, self.class_weights, reduction="none")
            return losses, item_weights(targets, self.class_weights)
        losses = weighted_cross_entropy(logits, labels, self.class_weights, reduction="none")
        return losses, self.class_weights.to(logits.device)[labels]

    def _ratings(self, dataset: UtteranceDataset) -> torch.Tensor:
        if not self.attributes:
            return torch.zeros(len(dataset), 0)
        rows = [u.attribute_values(self.attributes) for u in dataset.utterances]
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(self.attributes))

    def loss(self, outputs: torch.Tensor, batch: Batch | FeatureBatch, split: str) -> torch.Tensor:
        """The training loss of a batch's float outputs (on the batch's device)."""
        logits, values = self.outputs(outputs)
        total = torch.zeros((), device=outputs.device)
        if logits is not None and self.distribution:
            targets = self.shaped(split, batch.indices.cpu()).to(outputs.device)
            total = distribution_loss(logits, targets, self.class_weights)
        elif logits is not None:
            total = weighted_cross_entropy(logits, batch.labels, self.class_weights)
        if values is not None:
            target = self.targets[split][batch.indices.cpu()].to(outputs.device)
            part = attribute_loss(values, target, self.kind)
            total = part if logits is None else total + self.weight * part
        return total

    def score(
        self,
        accelerator: Accelerator,
        module: nn.Module,
        batches: Iterable[Batch | FeatureBatch | None],
        split: str,
        interval: bool,
    ) -> dict[str, Any]:
        """The split's metrics, its loss (the training objective over the whole split),
        the count of non-finite outputs and the outputs themselves (``predictions``).

        The one scoring path: ``module`` runs on every batch (on every process, gathered),
        and the classes and attributes are scored from its outputs."""
        dataset = self.splits[split]
        outputs = gather_outputs(accelerator, module, batches, len(dataset))
        rows = torch.from_numpy(outputs.values).float().reshape(-1, self.layout.width)
        logits, values = self.outputs(rows)
        metrics: dict[str, Any] = {}
        losses: list[float] = []
        if logits is not None:
            truth = torch.tensor([dataset.label_of(i) for i in outputs.indices], dtype=torch.long)
            labelled = truth != NO_LABEL
            genders = [
                dataset.utterances[i].gender
                for i, keep in zip(outputs.indices, labelled.tolist(), strict=True)
                if keep
            ]
            metrics |= classification_metrics(
                truth[labelled].tolist(), logits[labelled].argmax(dim=-1).tolist(), self.labels,
                genders, interval,
            )  # fmt: skip
            if self.distribution:
                shares = self.shares[split][outputs.indices]
                metrics |= {"n": len(outputs.indices), "n_labelled": int(labelled.sum())}
                metrics |= distribution_metrics(shares, logits)
            item, weights = self.class_losses(logits, truth, outputs.indices, split)
            total = float(weights.sum())
            losses.append(float(item.sum()) / total if total else math.nan)
        if values is not None:
            target = self.targets[split][outputs.indices]
            metrics |= regression_metrics(target.numpy(), values.numpy(), self.attributes)
            part = float(attribute_loss(values, target, self.kind)) if len(target) else math.nan
            losses.append(part if logits is None else self.weight * part)
        if logits is not None and values is not None:
            metrics["score"] = (metrics["uar"] + metrics["ccc"]) / 2
        metrics["loss"] = sum(losses)
        metrics["non_finite_outputs"] = len(outputs.nonfinite)
        metrics["predictions"] = outputs
        return metrics

    def row(self, split: str, metrics: dict[str, Any]) -> dict[str, float]:
        """The history columns of a split: the headline metrics, more of them for dev
        (`history_metrics`: those ``optim.select_on`` can choose among)."""
        keys = history_metrics(self.task, self.attributes, split)
        return {f"{split}_{key}": metrics[key] for key in keys}

    def write_split_files(
        self, directory: Path, split: str, metrics: dict[str, Any], outputs: Outputs, title: str
    ) -> None:
        """predictions.csv of a scored ``split`` (true and predicted label and/or values; for
        the distribution task each label's vote share and predicted probability), and
        confusion.png and/or attributes.png (predicted against true, per attribute)."""
        dataset = self.splits[split]
        rows = torch.from_numpy(outputs.values).float().reshape(-1, self.layout.width)
        logits, values = self.outputs(rows)
        header = ["key", "label"]
        table: list[list[object]] = [
            [dataset.utterances[i].key, dataset.utterances[i].label] for i in outputs.indices
        ]
        if logits is not None:
            header.append("predicted")
            for line, predicted in zip(table, logits.argmax(dim=-1).tolist(), strict=True):
                line.append(self.labels[predicted])
            if self.distribution:
                header += [f"votes_{name}" for name in self.labels]
                header += [f"probability_{name}" for name in self.labels]
                shares = list(self.shares[split][outputs.indices].numpy())  # 0.6, not 0.6000000238
                probabilities = torch.softmax(logits.double(), dim=-1).tolist()
                for line, share, probability in zip(table, shares, probabilities, strict=True):
                    line += [*share, *probability]
            save_figure(
                directory / CONFUSION, confusion_figure(metrics["confusion"], self.labels, title)
            )
        if values is not None:
            target = self.targets[split][outputs.indices]
            header += [*self.attributes, *(f"predicted_{a}" for a in self.attributes)]
            for line, truth, predicted in zip(table, target.tolist(), values.tolist(), strict=True):
                line += [*truth, *predicted]
            figure = attribute_scatter_figure(
                target.numpy(), values.numpy(), self.attributes, title
            )
            save_figure(directory / ATTRIBUTES_PLOT, figure)
        write_atomic(directory / PREDICTIONS, csv_text(header, table))


def score_utterances(
    accelerator: Accelerator,
    module: nn.Module,
    layout: OutputLayout,
    utterances: Sequence[Utterance],
    split: str,
    batch_size: int,
    labels: list[str],
    attributes: list[str],
    columns: list[int] | None = None,
    interval: bool = True,
    votes: bool = True,
) -> tuple[Objective, dict[str, Any]]:
    """Score a saved model (``module``, prepared by the accelerator, in eval mode; its outputs
    laid out by ``layout``) on ``utterances``, named ``split``, as training scores a split:
    through `Objective.score`. Returns the objective (for its files) and the metrics.

    ``labels`` name the utterances' classes, ``columns`` the model's logits of them, ``votes``
    whether a distribution model is scored on vote shares (see `Objective`). Only the
    utterances the scored task can use are scored (`usable`: those with votes on ``labels``,
    or with a majority label). Unlike a training split, no loss is reported: its class
    weights and attribute loss would be a training run's, not the model's.
    """
    task = scored_task(layout, votes)
    dataset = UtteranceDataset(usable(utterances, task, labels), labels)
    sampler = LengthBucketSampler(dataset.lengths(), batch_size, shuffle=False)
    objective = Objective(
        layout, labels, attributes, OptimConfig(), torch.ones(len(labels)), {split: dataset},
        columns, votes,
    )  # fmt: skip
    batches = loader_batches(dataset, sampler, num_workers=0)
    metrics = objective.score(accelerator, module, batches, split, interval)
    del metrics["loss"]
    return objective, metrics
