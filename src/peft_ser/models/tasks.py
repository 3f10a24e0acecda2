"""What a model predicts: class labels, the annotators' vote distribution over them, emotional
attributes, or labels and attributes both, and their losses.

A model's head ends in one output row per clip, laid out by `OutputLayout`: first one logit per
class (``categorical``, ``distribution`` and ``multitask``), then one value per attribute
(``attributes`` and ``multitask``), on the corpus's own rating scale. Keeping one tensor keeps
every path that moves outputs around (batches, the feature cache, accelerate's gathering,
export) unchanged; a ``distribution`` model's outputs are a categorical model's (its softmax is
the predicted distribution), so loading, prediction and export need nothing of their own.

The categorical loss is the class-weighted cross entropy (`weighted_cross_entropy`). The
distribution loss is the class-weighted KL divergence from the annotators' shares of the label
set (`vote_shares`, shaped by `shape_targets`) to the predicted distribution
(`distribution_loss`). Attribute
losses: ``ccc`` (1 − the concordance correlation coefficient of each attribute over
the batch, averaged over attributes: the challenge metric itself, so scale and offset must be
learned as well as correlation) or ``mse``. Multi-task training adds the attribute loss, times
``optim.attribute_weight``, to the class-weighted cross entropy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from peft_ser.data.manifest import PreparedCorpus, Utterance
from peft_ser.models.config import ModelConfig
from peft_ser.utils.errors import UserError

_TASK_OF_TARGETS = {
    "categorical": "categorical",
    "attributes": "attributes",
    "both": "multitask",
    "distribution": "distribution",
}
"""The task a prepared corpus trains when the config does not choose one."""
_TARGETS_OF_TASK = {
    "categorical": ("categorical", "both", "distribution"),
    "attributes": ("attributes", "both"),
    "multitask": ("both",),
}
"""The preparations whose corpus holds what a task needs; ``distribution`` needs votes, which
any preparation may hold (`require_votes` checks the corpus itself)."""
ATTRIBUTE_TASKS = ("attributes", "multitask")
"""The tasks whose outputs include attribute values."""


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
        """Attribute values after the class logits (none for a categorical or distribution
        model)."""
        return self.attributes if self.task in ATTRIBUTE_TASKS else 0

    @property
    def width(self) -> int:
        return self.logits_width + self.values_width

    def logits(self, outputs: torch.Tensor) -> torch.Tensor | None:
        """The class logits ``[B, C]``, or None for an attribute-only model."""
        return outputs[:, : self.logits_width] if self.logits_width else None

    def values(self, outputs: torch.Tensor) -> torch.Tensor | None:
        """The attribute values ``[B, A]``, or None for a categorical or distribution model."""
        return outputs[:, self.logits_width :] if self.task in ATTRIBUTE_TASKS else None


def layout_of(config: ModelConfig) -> OutputLayout:
    """The output layout of a model built from ``config`` (no task: categorical)."""
    task = config.task or "categorical"
    if task in ATTRIBUTE_TASKS and not config.attributes:
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
    if task == "distribution":
        require_votes(prepared, "model.task distribution")
    elif prepared.targets not in _TARGETS_OF_TASK[task]:
        need = " or ".join(f"--targets {t}" for t in _TARGETS_OF_TASK[task])
        raise TaskError(
            f"model.task {task}: the corpus was prepared with --targets {prepared.targets}; "
            f"prepare it with {need}"
        )
    attributes = list(prepared.attributes) if task in ATTRIBUTE_TASKS else []
    return config.model_copy(
        update={"labels": prepared.labels, "task": task, "attributes": attributes}
    )


def require_votes(prepared: PreparedCorpus, what: str) -> None:
    """`TaskError` unless some utterance of ``prepared`` has annotator votes on its labels:
    ``what`` (the task, or the model to score) needs them as its targets."""
    if not any(vote_shares(u.votes, prepared.labels) for u in prepared.manifest):
        where = prepared.directory or "the corpus"
        raise TaskError(
            f"{what}: {where} holds no annotator votes on its labels; prepare it with "
            "--targets distribution (from a corpus that ships every annotator's label)"
        )


def vote_shares(votes: Mapping[str, float] | None, labels: Sequence[str]) -> list[float] | None:
    """The annotators' shares of each label of ``labels``: the in-set weights normalised to
    sum to 1, the weight on categories outside the label set (``other``) dropped. None without
    votes, or when no annotator chose a label of the set: such an utterance is no target."""
    if votes is None:
        return None
    weights = [votes.get(label, 0.0) for label in labels]
    total = sum(weights)
    return [weight / total for weight in weights] if total > 0 else None


def usable(utterances: Sequence[Utterance], task: str, labels: Sequence[str]) -> list[Utterance]:
    """The utterances ``task`` can train on or be scored on: every one for ``attributes``;
    for ``distribution`` those with votes on ``labels`` (`vote_shares`); for the tasks that
    learn one class, those with one (an utterance kept for its votes alone has the label "")."""
    if task == "attributes":
        return list(utterances)
    if task == "distribution":
        return [u for u in utterances if vote_shares(u.votes, labels) is not None]
    return [u for u in utterances if u.label]


def shape_targets(shares: torch.Tensor, temperature: float, smoothing: float) -> torch.Tensor:
    """Vote shares ``[N, C]`` as training targets: each share raised to ``1 / temperature``
    and renormalised (below 1 sharpens toward the majority, above 1 flattens toward a uniform
    share of the labels that got votes; labels nobody chose stay at 0), then mixed with the
    uniform distribution, ``(1 − smoothing)·t + smoothing / C`` (the only way a label nobody
    chose gets a share). 1 and 0 leave the shares as they are.

    The power is taken of each share divided by its row's largest, so no row underflows to
    zeros however small the temperature."""
    shaped = shares.double()
    if temperature != 1.0:
        top = shaped.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        shaped = (shaped / top) ** (1.0 / temperature)
        shaped = shaped / shaped.sum(dim=-1, keepdim=True)
    if smoothing:
        shaped = (1.0 - smoothing) * shaped + smoothing / shares.shape[-1]
    return shaped.to(shares.dtype)


def kl_divergence(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """KL(target ‖ softmax(logits)) of each row, in nats: Σ_c t_c·(log t_c − log q_c), with
    0·log 0 = 0. The one definition: the distribution loss and the ``kld`` metric (in float64)
    both call it. Taken from the log-softmax, it stays finite where a predicted probability
    underflows to 0."""
    log_predicted = torch.log_softmax(logits, dim=-1)
    return (torch.special.xlogy(targets, targets) - targets * log_predicted).sum(dim=-1)


def distribution_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    reduction: Literal["mean", "none"] = "mean",
) -> torch.Tensor:
    """The class-weighted KL divergence to the target distributions, the distribution task's loss.

    Item i weighs ``w_i = Σ_c w[c]·t_ic``, its target's expected class weight, and its loss is
    ``w_i · KL(t_i ‖ softmax(logits_i))`` (``reduction="none"``); a set's loss is
    Σ w_i·ℓ_i / Σ w_i (``"mean"``). On one-hot targets this is `weighted_cross_entropy`
    exactly (the KL of a one-hot target is its cross entropy), and its gradient is the soft
    cross entropy's (they differ by the target's entropy, a constant).
    """
    weights = item_weights(targets, class_weights)
    losses = weights * kl_divergence(logits, targets)
    if reduction == "none":
        return losses
    return losses.sum() / weights.sum()


def item_weights(targets: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor:
    """Each target distribution's expected class weight, ``t_i · w`` (no weights: 1 each)."""
    if class_weights is None:
        return torch.ones(targets.shape[0], dtype=targets.dtype, device=targets.device)
    return targets @ class_weights.to(device=targets.device, dtype=targets.dtype)


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
