"""A training epoch's running loss and headline metrics, for the progress bar and the log."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from peft_ser.data.dataset import NO_LABEL, Batch
from peft_ser.data.states import FeatureBatch
from peft_ser.evaluation.metrics import jensen_shannon, regression_metrics, uar
from peft_ser.evaluation.objectives import Objective


@dataclass
class EpochTracker:
    """Running loss and headline metrics of a training epoch, from the applied steps.

    The class loss (cross entropy, or the distribution task's KL divergence) is averaged over
    items by their class weights (as the dev loss); with attributes, each batch's loss is
    averaged over batches by their size. UAR counts the items with a majority label.
    """

    objective: Objective
    loss_sum: float = 0.0
    weight_sum: float = 0.0
    truth: list[int] = field(default_factory=list)
    predicted: list[int] = field(default_factory=list)
    values: list[torch.Tensor] = field(default_factory=list)
    targets: list[torch.Tensor] = field(default_factory=list)
    divergences: list[torch.Tensor] = field(default_factory=list)

    def add(self, outputs: torch.Tensor, batch: Batch | FeatureBatch) -> None:
        """Count one applied step's float outputs (on the CPU) of ``batch``."""
        logits, values = self.objective.outputs(outputs)
        with torch.no_grad():
            if values is None and logits is not None:
                losses, _ = self.objective.class_losses(
                    logits, batch.labels, batch.indices, "train"
                )
                self.loss_sum += float(losses.sum())
            else:
                self.loss_sum += float(self.objective.loss(outputs, batch, "train")) * len(batch)
            self.weight_sum += self.objective.batch_weight(batch)
        if logits is not None:
            labelled = batch.labels.cpu() != NO_LABEL
            self.truth += batch.labels.cpu()[labelled].tolist()
            self.predicted += logits[labelled].argmax(dim=-1).tolist()
        if logits is not None and self.objective.distribution:
            shares = self.objective.shares["train"][batch.indices]
            self.divergences.append(jensen_shannon(shares, torch.softmax(logits.double(), -1)))
        if values is not None:
            self.values.append(values)
            self.targets.append(self.objective.targets["train"][batch.indices])

    @property
    def empty(self) -> bool:
        return self.weight_sum == 0

    def loss(self) -> float:
        return self.loss_sum / self.weight_sum if self.weight_sum else math.nan

    def metrics(self) -> dict[str, float]:
        """The epoch's headline metrics so far (``jsd``, ``uar``, ``ccc``, ``score``)."""
        result: dict[str, float] = {}
        if self.objective.distribution:
            jsd = torch.cat(self.divergences).mean() if self.divergences else math.nan
            result["jsd"] = float(jsd)
        if self.objective.layout.logits_width:
            result["uar"] = uar(self.truth, self.predicted) if self.truth else math.nan
        if self.values:
            truth, pred = torch.cat(self.targets).numpy(), torch.cat(self.values).numpy()
            result["ccc"] = regression_metrics(truth, pred, self.objective.attributes)["ccc"]
        elif self.objective.layout.values_width:
            result["ccc"] = math.nan
        if self.objective.layout.task == "multitask":
            result["score"] = (result["uar"] + result["ccc"]) / 2
        return result

    def postfix(self) -> dict[str, str]:
        """The progress bar's running numbers."""
        shown = {"loss": f"{self.loss():.3f}"}
        return shown | {name: f"{value:.3f}" for name, value in self.metrics().items()}
