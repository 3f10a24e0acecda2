"""Guards that keep a broken run from turning into a result.

Two failures are common and silent in SER training: a step whose loss or gradient is not
finite (one corrupt clip, an overflow in half precision) poisons every weight it touches, and a
run that never learns (label-homogeneous batches, a learning rate far too high, labels that do
not follow the audio) still ends with a "best" model. `NonFiniteSteps` refuses the first and
stops the fold when it repeats; `collapse_warnings` names the second in the log and the results.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from peft_ser.utils.errors import UserError

log = logging.getLogger(__name__)

CHANCE_MARGIN = 0.05
"""Training UAR within this of chance (1 / classes) counts as "at chance"."""
CHANCE_EPOCHS = 5
"""Training UAR at chance for this many final epochs flags a collapsed run."""
RISING_EPOCHS = 3
"""Training loss rising this many epochs in a row (and above its best) flags a collapsed run."""

LIKELY_CAUSES = (
    "batches that hold one label each (length bucketing where clip length follows the label: "
    "turn data.bucketing off, its default), a learning rate too high "
    "for the corpus size (optim.lr), too few training clips per class, or labels that do not "
    "match the audio (check the prepared manifest)"
)


class NonFiniteTrainingError(UserError):
    """Training stopped: too many steps had a non-finite loss or gradient."""


class NonFiniteSteps:
    """Counts refused steps of a fold; past ``limit`` of them the fold stops with an error
    that names the likely cause (see `likely_cause`)."""

    def __init__(self, fold: str, limit: int, lr: float | None = None) -> None:
        self.fold = fold
        self.limit = limit
        self.lr = lr
        self.count = 0
        self.batches: list[set[str]] = []

    def refuse(self, epoch: int, what: str, keys: Sequence[str]) -> None:
        """Record a step that was not applied; raise once more than ``limit`` were refused."""
        self.count += 1
        self.batches.append(set(keys))
        shown = _shown(keys)
        log.warning(
            "fold %s epoch %d: non-finite %s, step not applied (%d of at most %d); batch: %s",
            self.fold, epoch, what, self.count, self.limit, shown,
        )  # fmt: skip
        if self.count > self.limit:
            raise NonFiniteTrainingError(
                f"fold {self.fold}: {self.count} training steps had a non-finite {what} "
                f"(limit optim.max_nonfinite_steps = {self.limit}); last batch: {shown}. "
                f"Likely cause: {self.likely_cause()}"
            )

    def likely_cause(self) -> str:
        """Clips present in every refused batch point at their audio or labels; refused batches
        with nothing in common point at the optimisation (a rate that makes the loss diverge)."""
        common = set.intersection(*self.batches) if len(self.batches) > 1 else set()
        if len(self.batches) == 1:
            return (
                "non-finite audio or labels in that batch, or a learning rate too high; allow "
                "more refused steps (optim.max_nonfinite_steps) to tell them apart"
            )
        if common:
            return (
                f"non-finite audio or labels of {_shown(sorted(common))} (in every refused "
                "batch): check those clips and their labels in the prepared manifest"
            )
        rate = f" (optim.lr = {self.lr:g})" if self.lr is not None else ""
        return (
            f"a learning rate too high{rate}: the refused batches share no clip, so the loss "
            "diverged; lower optim.lr, set optim.grad_clip, or train in float32"
        )


def _shown(keys: Sequence[str]) -> str:
    return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")


def collapse_warnings(history: Sequence[dict[str, Any]], num_classes: int) -> list[str]:
    """Why this training history looks like a run that did not learn (empty: it learned)."""
    warnings = []
    chance = 1.0 / num_classes
    # attribute-only runs have no UAR, and no chance level to compare it with
    recent = [row["train_uar"] for row in history[-CHANCE_EPOCHS:] if "train_uar" in row]
    if len(recent) == CHANCE_EPOCHS and all(u <= chance + CHANCE_MARGIN for u in recent):
        warnings.append(
            f"training UAR stayed at chance ({chance:.2f}) for the last {CHANCE_EPOCHS} epochs "
            f"(latest {recent[-1]:.3f})"
        )
    losses = [row["train_loss"] for row in history]
    rising = _rising_tail(losses)
    if rising >= RISING_EPOCHS and losses[-1] > min(losses):
        warnings.append(
            f"training loss rose for the last {rising} epochs "
            f"(from {losses[-rising - 1]:.4f} to {losses[-1]:.4f})"
        )
    return [
        f"{text}: the run may have collapsed; likely causes: {LIKELY_CAUSES}" for text in warnings
    ]


def _rising_tail(values: Sequence[float]) -> int:
    """How many of the last values each exceed the one before."""
    rising = 0
    for before, after in zip(reversed(values[:-1]), reversed(values[1:]), strict=True):
        if after <= before:
            break
        rising += 1
    return rising
