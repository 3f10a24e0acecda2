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
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn

from peft_ser.config import OptimConfig
from peft_ser.data.dataset import Batch, UtteranceDataset
from peft_ser.data.manifest import csv_text
from peft_ser.data.states import FeatureBatch
from peft_ser.evaluation.metrics import (
    attribute_scatter_figure,
    classification_metrics,
    confusion_figure,
    regression_metrics,
)
from peft_ser.evaluation.results import save_figure
from peft_ser.evaluation.scoring import gather_rows
from peft_ser.models.tasks import OutputLayout, attribute_loss
from peft_ser.utils.fileio import write_atomic

_SELECTION = {"categorical": "uar", "attributes": "ccc", "multitask": "score"}


@dataclass
class Outputs:
    """Gathered outputs of one split in dataset index order; rows that are not finite are
    left out of ``indices`` and ``values`` and listed in ``nonfinite``."""

    indices: list[int]
    values: np.ndarray
    nonfinite: list[int]


def gather_outputs(
    accelerator: Accelerator,
    module: nn.Module,
    batches: Iterable[Batch | FeatureBatch | None],
    size: int,
) -> Outputs:
    """Every batch's output rows on every process, gathered, one per item (`gather_rows`)."""
    rows = gather_rows(accelerator, module, batches, size, lambda out, _: out.cpu().tolist())
    finite = [i for i, row in rows.items() if all(math.isfinite(v) for v in row)]
    width = len(next(iter(rows.values()))) if rows else 0
    values = np.array([rows[i] for i in finite], dtype=np.float64).reshape(len(finite), width)
    kept = set(finite)
    return Outputs(finite, values, [i for i in rows if i not in kept])


class Objective:
    """Loss, statistics and scores of one task over a fold's splits."""

    def __init__(
        self,
        layout: OutputLayout,
        labels: list[str],
        attributes: list[str],
        optim: OptimConfig,
        class_weights: torch.Tensor,
        splits: dict[str, UtteranceDataset],
    ) -> None:
        self.layout, self.labels, self.attributes = layout, labels, attributes
        self.kind, self.weight = optim.attribute_loss, optim.attribute_weight
        self.class_weights = class_weights
        self.splits = splits
        self.targets = {name: self._ratings(dataset) for name, dataset in splits.items()}

    @property
    def selection(self) -> str:
        """The dev metric that picks the best epoch: ``uar``, ``ccc`` or ``score``."""
        return _SELECTION[self.layout.task]

    def _ratings(self, dataset: UtteranceDataset) -> torch.Tensor:
        if self.layout.task == "categorical":
            return torch.zeros(len(dataset), 0)
        rows = [u.attribute_values(self.attributes) for u in dataset.utterances]
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), len(self.attributes))

    def loss(self, outputs: torch.Tensor, batch: Batch | FeatureBatch, split: str) -> torch.Tensor:
        """The training loss of a batch's float outputs (on the batch's device)."""
        logits, values = self.layout.logits(outputs), self.layout.values(outputs)
        total = torch.zeros((), device=outputs.device)
        if logits is not None:
            weights = self.class_weights.to(outputs.device)
            total = nn.functional.cross_entropy(logits, batch.labels, weight=weights)
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
        the count of non-finite outputs and the outputs themselves (``predictions``)."""
        dataset = self.splits[split]
        outputs = gather_outputs(accelerator, module, batches, len(dataset))
        rows = torch.from_numpy(outputs.values).float().reshape(-1, self.layout.width)
        logits, values = self.layout.logits(rows), self.layout.values(rows)
        metrics: dict[str, Any] = {}
        losses: list[float] = []
        if logits is not None:
            truth = torch.tensor([dataset.label_of(i) for i in outputs.indices], dtype=torch.long)
            genders = [dataset.utterances[i].gender for i in outputs.indices]
            metrics |= classification_metrics(
                truth.tolist(), logits.argmax(dim=-1).tolist(), self.labels, genders, interval
            )
            item = nn.functional.cross_entropy(logits, truth, reduction="none")
            weights = self.class_weights[truth]
            total = float(weights.sum())
            losses.append(float((item * weights).sum()) / total if total else math.nan)
        if values is not None:
            target = self.targets[split][outputs.indices]
            metrics |= regression_metrics(target.numpy(), values.numpy(), self.attributes)
            part = float(attribute_loss(values, target, self.kind)) if len(target) else math.nan
            losses.append(part if logits is None else self.weight * part)
        if self.layout.task == "multitask":
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
        logits, values = self.layout.logits(rows), self.layout.values(rows)
        header = ["key", "label"]
        table: list[list[object]] = [
            [dataset.utterances[i].key, dataset.utterances[i].label] for i in outputs.indices
        ]
        if logits is not None:
            header.append("predicted")
            for line, predicted in zip(table, logits.argmax(dim=-1).tolist(), strict=True):
                line.append(self.labels[predicted])
            save_figure(
                directory / "confusion.png",
                confusion_figure(metrics["confusion"], self.labels, title),
            )
        if values is not None:
            target = self.targets[split][outputs.indices]
            header += [*self.attributes, *(f"predicted_{a}" for a in self.attributes)]
            for line, truth, predicted in zip(table, target.tolist(), values.tolist(), strict=True):
                line += [*truth, *predicted]
            figure = attribute_scatter_figure(
                target.numpy(), values.numpy(), self.attributes, title
            )
            save_figure(directory / "attributes.png", figure)
        write_atomic(directory / "predictions.csv", csv_text(header, table))
