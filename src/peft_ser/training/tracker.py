"""A training epoch's running loss and headline metrics, for the progress bar and the log."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from peft_ser.data.dataset import Batch
from peft_ser.data.states import FeatureBatch
from peft_ser.evaluation.metrics import regression_metrics, uar
from peft_ser.evaluation.objectives import Objective
from peft_ser.models.tasks import weighted_cross_entropy


@dataclass
class EpochTracker:
    """Running loss and headline metrics of a training epoch, from the applied steps.

    The categorical loss is the class-weighted cross entropy averaged over items (as the dev
    loss); with attributes, each batch's loss is averaged over batches by their size.
    """

    objective: Objective
    loss_sum: float = 0.0
    weight_sum: float = 0.0
    truth: list[int] = field(default_factory=list)
    predicted: list[int] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    targets: list[torch.Tensor] = field(default_factory=list)

    def add(self, outputs: torch.Tensor, batch: Batch | FeatureBatch) -> None:
        """Count one applied step's float outputs (on the CPU) of ``batch``."""
        logits, values = self.objective.outputs(outputs)
        with torch.no_grad():
            if values is None and logits is not None:
                losses = weighted_cross_entropy(
                    logits, batch.labels, self.objective.class_weights, reduction="none"
                )
                self.loss_sum += float(losses.sum())
            else:
                self.loss_sum += float(self.objective.loss(outputs, batch, "train")) * len(batch)
            self.weight_sum += self.objective.batch_weight(batch)
        if logits is not None:
            self.truth += batch.labels.tolist()
            self.predicted += logits.argmax(dim=-1).tolist()
        if values is not None:
            self.values.append(values)
            self.targets.append(self.objective.targets["train"][batch.indices])

    @property
    def empty(self) -> bool:
        return self.weight_sum == 0

    def loss(self) -> float:
        return self.loss_sum / self.weight_sum if self.weight_sum else math.nan

    def metrics(self) -> dict[str, float]:
        """The epoch's headline metrics so far (``uar``, ``ccc``, ``score``)."""
        result: dict[str, float] = {}
        if self.objective.layout.logits_width:
            result["uar"] = uar(self.truth, self.predicted) if self.truth else math.nan
        if self.values:
            truth, pred = torch.cat(self.targets).numpy(), torch.cat(self.values).numpy()
            result["ccc"] = regression_metrics(truth, pred, self.objective.attributes)["ccc"]
        elif self.objective.layout.task != "categorical":
            result["ccc"] = math.nan
        if self.objective.layout.task == "multitask":
            result["score"] = (result["uar"] + result["ccc"]) / 2
        return result

    def postfix(self) -> dict[str, str]:
        """The progress bar's running numbers."""
        shown = {"loss": f"{self.loss():.3f}"}
        return shown | {name: f"{value:.3f}" for name, value in self.metrics().items()}
