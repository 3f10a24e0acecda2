"""What a model predicts: class labels, emotional attributes, or both, and their losses.

A model's head ends in one output row per clip, laid out by `OutputLayout`: first one logit per
class (``categorical`` and ``multitask``), then one value per attribute (``attributes`` and
``multitask``), on the corpus's own rating scale. Keeping one tensor keeps every path that
moves outputs around (batches, the feature cache, accelerate's gathering, export) unchanged.

The categorical loss is the class-weighted cross entropy (`weighted_cross_entropy`). Attribute
losses: ``ccc`` (1 − the concordance correlation coefficient of each attribute over
the batch, averaged over attributes: the challenge metric itself, so scale and offset must be
learned as well as correlation) or ``mse``. Multi-task training adds the attribute loss, times
``optim.attribute_weight``, to the class-weighted cross entropy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from peft_ser.data.manifest import PreparedCorpus
from peft_ser.models.config import ModelConfig
from peft_ser.utils.errors import UserError

_TASK_OF_TARGETS = {
    "categorical": "categorical",
    "attributes": "attributes",
    "both": "multitask",
    "distribution": "categorical",
}
"""The task a prepared corpus trains when the config does not choose one."""
_TARGETS_OF_TASK = {
    "categorical": ("categorical", "both", "distribution"),
    "attributes": ("attributes", "both"),
    "multitask": ("both",),
}


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
    2·cov / (var_p + var_t + (mean_p − mean_t)²), population moments.

    The one definition of CCC: the attribute loss differentiates it, and the reported metric
    (`peft_ser.evaluation.metrics.concordance_cc`) calls it in float64. Its edge cases: a
    column with no item, or whose two sides are constant and equal (nothing to agree on, the
    formula reads 0/0), scores 0; a constant side against a varying one scores 0 (no
    covariance). Each column is centred on its first value before its mean is taken, so a
    constant column's deviations are exactly 0 in any dtype (a plain mean of N equal floats
    can round off them, leaving a tiny variance that made two equal constants score 1).
    """
    if predicted.shape[0] == 0:
        return torch.zeros(predicted.shape[1:], dtype=predicted.dtype, device=predicted.device)
    predicted_mean, target_mean = _mean(predicted), _mean(target)
    predicted_deviation, target_deviation = predicted - predicted_mean, target - target_mean
    covariance = (predicted_deviation * target_deviation).mean(dim=0)
    denominator = (
        (predicted_deviation**2).mean(dim=0)
        + (target_deviation**2).mean(dim=0)
        + (predicted_mean - target_mean) ** 2
    )
    defined = denominator > 0
    safe = torch.where(defined, denominator, torch.ones_like(denominator))
    return torch.where(defined, 2 * covariance / safe, torch.zeros_like(denominator))


def _mean(values: torch.Tensor) -> torch.Tensor:
    """The column means of ``[N, A]`` values, taken about the first row (exact for constants;
    the gradient is the plain mean's)."""
    return values[0] + (values - values[:1]).mean(dim=0)


def weighted_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """The class-weighted cross entropy, the one definition of the categorical loss.

    Item i's loss is ``w[y_i] · (−log softmax(logits_i)[y_i])`` (``reduction="none"``); the loss
    of a set of items is their weighted mean, Σ w[y_i]·ℓ_i / Σ w[y_i] (``"mean"``: what training
    minimises, and what the scores of a split and an epoch's running loss compute from the
    items' losses and weights, ``class_weights[labels]``). No ``class_weights``: every weight is
    1, a plain mean.
    """
    weights = None if class_weights is None else class_weights.to(logits.device)
    return torch.nn.functional.cross_entropy(logits, labels, weight=weights, reduction=reduction)


def attribute_loss(predicted: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """``ccc``: mean over attributes of 1 − CCC; ``mse``: mean squared error."""
    if kind == "ccc":
        return (1 - concordance(predicted, target)).mean()
    return torch.nn.functional.mse_loss(predicted, target)
