"""The learning-rate schedule of a fold, its tested epoch and its early stop.

``plateau`` (the paper's) halves the rate when dev loss stalls and moves once per epoch.
``constant``, ``linear`` and ``cosine`` are fixed in advance: a linear warmup from
``lr / (warmup + 1)``, then ``lr`` throughout, or a straight line or half a cosine from ``lr``
down to ``min_lr``, which the last epoch (or step) trains at. They move once per epoch with
``warmup_epochs`` (or no warmup), and once per optimiser step with ``warmup_steps``, as
Hugging Face's ``Trainer`` does; a schedule is a ``LambdaLR`` of the moves made, so its
checkpointed state is a count and a resumed run continues where it stopped.

The tested epoch and the early stop are functions of the history alone (which every
checkpoint holds), so a resumed run picks the epoch the whole run picks, and a run killed
after its stopping epoch stops again when it is resumed, without training on. Both follow the
dev metric that ``optim.select_on`` names (`peft_ser.config.selection`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from peft_ser.config import OptimConfig
from peft_ser.config.selection import metric_label
from peft_ser.evaluation.objectives import improves
from peft_ser.utils.errors import UserError


class ScheduleError(UserError):
    """The schedule cannot fit the run (a warmup of more steps than the run takes)."""


def per_step(optim: OptimConfig) -> bool:
    """Whether the schedule moves once per optimiser step (else once per epoch)."""
    return optim.schedule != "plateau" and optim.warmup_steps > 0


def build_scheduler(
    optimizer: torch.optim.Optimizer, optim: OptimConfig, steps_per_epoch: int = 1
) -> Any:
    """The learning-rate schedule; ``steps_per_epoch`` (optimiser steps) sizes a per-step one."""
    if optim.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=optim.plateau_factor,
            patience=optim.plateau_patience,
            min_lr=optim.min_lr,
        )
    if per_step(optim):
        total = optim.epochs * steps_per_epoch
        if optim.warmup_steps >= total:
            raise ScheduleError(
                f"optim.warmup_steps {optim.warmup_steps}: the run takes {total} optimiser steps "
                f"({optim.epochs} epochs × {steps_per_epoch}); warm up for fewer"
            )
        factor = _factor(optim, optim.warmup_steps, total)
    else:
        factor = _factor(optim, optim.warmup_epochs, optim.epochs)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _factor(optim: OptimConfig, warmup: int, total: int) -> Callable[[int], float]:
    """The rate, as a multiple of ``lr``, after ``done`` of ``total`` moves."""
    floor = min(optim.min_lr / optim.lr, 1.0)
    decay = max(total - warmup - 1, 1)  # so that the last move trains at min_lr
    shape = optim.schedule

    def factor(done: int) -> float:
        if done < warmup:
            return (done + 1) / (warmup + 1)
        if shape == "constant":
            return 1.0
        # a per-step run may take a few steps more than planned (unreadable clips): stay at min
        elapsed = min(done - warmup, decay)
        if shape == "linear":
            return floor + (1 - floor) * (1 - elapsed / decay)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * elapsed / decay))

    return factor


def selected_epoch(
    history: Sequence[dict[str, Any]], metric: str, last: bool = False
) -> tuple[int, float]:
    """The epoch a fold would test after ``history`` and its dev ``metric`` score: the last
    epoch with ``last`` (``optim.select: last``), else the first to reach the best score
    (the highest, or the lowest for the loss or a divergence: `improves`). The first epoch is
    the best until one beats it, even without a dev score.

    A function of the history alone, as a checkpoint holds it, so a resumed fold picks what
    the whole run picks."""
    chosen = history[-1] if last else history[0]
    for row in history[1:] if not last else []:
        if improves(metric, row[f"dev_{metric}"], chosen[f"dev_{metric}"]):
            chosen = row
    return chosen["epoch"], chosen[f"dev_{metric}"]


def early_stop(history: Sequence[dict[str, Any]], metric: str, patience: int | None) -> str | None:
    """Why a fold stops after the last epoch of ``history``, or None to train on.

    It stops once the dev ``metric`` (``optim.select_on``'s) has not improved on its best
    (risen, or fallen for the loss or a divergence: `improves`) for ``patience`` epochs.
    Epochs without a dev score (an empty dev split) never count as the best, and a fold that
    has had none trains on: there is nothing to stop on.
    """
    if patience is None:
        return None
    best, best_epoch = None, 0
    for row in history:
        if improves(metric, row[f"dev_{metric}"], best):
            best, best_epoch = row[f"dev_{metric}"], row["epoch"]
    stale = len(history) and history[-1]["epoch"] - best_epoch
    if not best_epoch or stale < patience:
        return None
    return (
        f"dev {metric_label(metric)} did not improve for {stale} epochs after its best "
        f"({best:.3f} at epoch {best_epoch})"
    )
