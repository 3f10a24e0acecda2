"""What a model predicts: class labels, emotional attributes, or both, and their losses.

A model's head ends in one output row per clip, laid out by `OutputLayout`: first one logit per
class (``categorical`` and ``multitask``), then one value per attribute (``attributes`` and
``multitask``), on the corpus's own rating scale. Keeping one tensor keeps every path that
moves outputs around (batches, the feature cache, accelerate's gathering, export) unchanged.

Attribute losses: ``ccc`` (1 − the concordance correlation coefficient of each attribute over
the batch, averaged over attributes: the challenge metric itself, so scale and offset must be
learned as well as correlation) or ``mse``. Multi-task training adds the attribute loss, times
``optim.attribute_weight``, to the class-weighted cross entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from peft_ser.data.manifest import PreparedCorpus
from peft_ser.models.config import ModelConfig
from peft_ser.utils.errors import UserError

TASKS = ("categorical", "attributes", "multitask")
_TASK_OF_TARGETS = {"categorical": "categorical", "attributes": "attributes", "both": "multitask"}
"""The task a prepared corpus trains when the config does not choose one."""
_TARGETS_OF_TASK = {
    "categorical": ("categorical", "both"),
    "attributes": ("attributes", "both"),
    "multitask": ("both",),
}
_EPSILON = 1e-8


class TaskError(UserError):
    """A task the prepared corpus cannot train (its targets lack labels or ratings)."""


@dataclass(frozen=True)
class OutputLayout:
    """Which columns of a model's output are class logits and which attribute values."""

    task: str
    classes: int
    attributes: int

    @property
    def logits_width(self) -> int:
        return self.classes if self.task != "attributes" else 0

    @property
    def values_width(self) -> int:
        """Attribute values after the class logits (none for a categorical model)."""
        return self.attributes if self.task != "categorical" else 0

    @property
    def width(self) -> int:
        return self.logits_width + self.values_width

    def logits(self, outputs: torch.Tensor) -> torch.Tensor | None:
        """The class logits ``[B, C]``, or None for an attribute-only model."""
        return outputs[:, : self.logits_width] if self.logits_width else None

    def values(self, outputs: torch.Tensor) -> torch.Tensor | None:
        """The attribute values ``[B, A]``, or None for a categorical model."""
        return outputs[:, self.logits_width :] if self.task != "categorical" else None


def layout_of(config: ModelConfig) -> OutputLayout:
    """The output layout of a model built from ``config`` (no task: categorical)."""
    task = config.task or "categorical"
    if task != "categorical" and not config.attributes:
        raise TaskError(
            f"model.task {task} needs model.attributes (training fills them from a corpus "
            "prepared with --targets attributes or both)"
        )
    return OutputLayout(task, len(config.labels), len(config.attributes))


def resolve_task(config: ModelConfig, prepared: PreparedCorpus) -> ModelConfig:
    """``config`` with the corpus's labels and attributes and the task filled in: the
    config's own, or the one the corpus was prepared for. `TaskError` when the corpus lacks
    what the chosen task needs."""
    task = config.task or _TASK_OF_TARGETS[prepared.targets]
    if prepared.targets not in _TARGETS_OF_TASK[task]:
        need = " or ".join(f"--targets {t}" for t in _TARGETS_OF_TASK[task])
        raise TaskError(
            f"model.task {task}: the corpus was prepared with --targets {prepared.targets}; "
            f"prepare it with {need}"
        )
    attributes = list(prepared.attributes) if task != "categorical" else []
    return config.model_copy(
        update={"labels": prepared.labels, "task": task, "attributes": attributes}
    )


def concordance(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lin's concordance correlation coefficient per column of ``[N, A]`` tensors:
    2·cov / (var_p + var_t + (mean_p − mean_t)²), population moments."""
    predicted_mean, target_mean = predicted.mean(dim=0), target.mean(dim=0)
    covariance = ((predicted - predicted_mean) * (target - target_mean)).mean(dim=0)
    denominator = (
        predicted.var(dim=0, unbiased=False)
        + target.var(dim=0, unbiased=False)
        + (predicted_mean - target_mean) ** 2
    )
    return 2 * covariance / (denominator + _EPSILON)


def attribute_loss(predicted: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """``ccc``: mean over attributes of 1 − CCC; ``mse``: mean squared error."""
    if kind == "ccc":
        return (1 - concordance(predicted, target)).mean()
    return torch.nn.functional.mse_loss(predicted, target)
