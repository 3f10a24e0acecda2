"""The task-specific side of training a fold: its loss, its running training statistics, the
scores of a whole split, the columns of its history and the files of its test predictions.

`FoldRunner` calls one `Objective` whatever the task (see `peft_ser.models.tasks`):

* ``categorical``: class-weighted cross entropy; UAR selects the best epoch, and a split is
  scored by `classification_metrics` (UAR, accuracy, macro-F1, fairness).
* ``attributes``: CCC or MSE loss on the attribute outputs; mean CCC selects the best epoch,
  and a split is scored by `regression_metrics` (CCC, Pearson, RMSE per attribute).
* ``multitask``: both losses (the attribute one weighted); both sets of metrics, and
  ``score`` = (UAR + mean CCC) / 2 selects the best epoch.

Attribute targets are looked up by the batch's dataset indices, so batches, samplers and the
feature cache carry class labels only and work unchanged for every task.

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
from peft_ser.data.dataset import Batch, UtteranceDataset
from peft_ser.data.manifest import Utterance, csv_text
from peft_ser.data.sampler import LengthBucketSampler
from peft_ser.data.states import FeatureBatch
from peft_ser.evaluation.metrics import (
    attribute_scatter_figure,
    classification_metrics,
    confusion_figure,
    regression_metrics,
)
from peft_ser.evaluation.results import save_figure
from peft_ser.evaluation.scoring import Outputs, gather_outputs, loader_batches
from peft_ser.models.tasks import OutputLayout, attribute_loss, weighted_cross_entropy
from peft_ser.runs.layout import ATTRIBUTES_PLOT, CONFUSION, PREDICTIONS
from peft_ser.utils.fileio import write_atomic

_SELECTION = {"categorical": "uar", "attributes": "ccc", "multitask": "score"}


class Objective:
    """Loss, statistics and scores of one task over a fold's splits.

    ``labels`` name the class ids of the splits' datasets; ``columns`` are the model's logit
    columns of those classes, in their order (default: every column, the model's classes being
    ``labels``), so a model can be scored on a subset of its classes, choosing among them only.
    Attribute values are scored for ``attributes``; with none, only the classes are (as the
    cross-corpus matrix scores a multitask model).
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
    ) -> None:
        self.layout, self.labels, self.attributes = layout, labels, attributes
        self.kind, self.weight = optim.attribute_loss, optim.attribute_weight
        self.class_weights = class_weights
        self.splits = splits
        self.columns = columns
        self.targets = {name: self._ratings(dataset) for name, dataset in splits.items()}

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
        cross_entropy_only = self.layout.task == "categorical" or not self.attributes
        if self.layout.logits_width and cross_entropy_only:
            return float(self.class_weights[batch.labels.cpu()].sum())
        return float(len(batch))

    @property
    def selection(self) -> str:
        """The dev metric that picks the best epoch: ``uar``, ``ccc`` or ``score``."""
        return _SELECTION[self.layout.task]

    def _ratings(self, dataset: UtteranceDataset) -> torch.Tensor:
        if not self.attributes:
            return torch.zeros(len(dataset), 0)
        rows = [u.attribute_values(self.attributes) for u in dataset.utterances]
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(self.attributes))

    def loss(self, outputs: torch.Tensor, batch: Batch | FeatureBatch, split: str) -> torch.Tensor:
        """The training loss of a batch's float outputs (on the batch's device)."""
        logits, values = self.outputs(outputs)
        total = torch.zeros((), device=outputs.device)
        if logits is not None:
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
            genders = [dataset.utterances[i].gender for i in outputs.indices]
            metrics |= classification_metrics(
                truth.tolist(), logits.argmax(dim=-1).tolist(), self.labels, genders, interval
            )
            item = weighted_cross_entropy(logits, truth, self.class_weights, reduction="none")
            weights = self.class_weights[truth]
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
        """The history columns of a split: the headline metrics, more of them for dev."""
        keys = []
        if self.layout.logits_width:
            keys += ["uar"] + (["accuracy", "macro_f1"] if split != "train" else [])
        if self.layout.task != "categorical":
            keys += ["ccc"] + ([f"ccc_{a}" for a in self.attributes] if split != "train" else [])
        if self.layout.task == "multitask":
            keys.append("score")
        return {f"{split}_{key}": metrics[key] for key in keys}

    def write_split_files(
        self, directory: Path, split: str, metrics: dict[str, Any], outputs: Outputs, title: str
    ) -> None:
        """predictions.csv of a scored ``split`` (true and predicted label and/or values), and
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
) -> tuple[Objective, dict[str, Any]]:
    """Score a saved model (``module``, prepared by the accelerator, in eval mode; its outputs
    laid out by ``layout``) on ``utterances``, named ``split``, as training scores a split:
    through `Objective.score`. Returns the objective (for its files) and the metrics.

    ``labels`` name the utterances' classes, ``columns`` the model's logits of them (see
    `Objective`). Unlike a training split, no loss is reported: its class weights and
    attribute loss would be a training run's, not the model's.
    """
    dataset = UtteranceDataset(list(utterances), labels)
    sampler = LengthBucketSampler(dataset.lengths(), batch_size, shuffle=False)
    objective = Objective(
        layout, labels, attributes, OptimConfig(), torch.ones(len(labels)), {split: dataset},
        columns,
    )  # fmt: skip
    batches = loader_batches(dataset, sampler, num_workers=0)
    metrics = objective.score(accelerator, module, batches, split, interval)
    del metrics["loss"]
    return objective, metrics
