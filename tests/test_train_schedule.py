"""The learning-rate schedules and the choice of the tested epoch."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from _tones import tiny_run
from pydantic import ValidationError

from peft_ser.config import OptimConfig
from peft_ser.training import train
from peft_ser.training.schedule import ScheduleError
from peft_ser.training.schedule import build_scheduler as _scheduler


def _cosine_rates(optim: OptimConfig) -> list[float]:
    """The rate of each epoch as the formula gives it: linear warmup, then half a cosine from
    lr down to min_lr over the remaining epochs, the last one at min_lr."""
    rates = []
    for done in range(optim.epochs):
        if done < optim.warmup_epochs:
            rates.append(optim.lr * (done + 1) / (optim.warmup_epochs + 1))
            continue
        phase = (done - optim.warmup_epochs) / (optim.epochs - optim.warmup_epochs - 1)
        rates.append(
            optim.min_lr + (optim.lr - optim.min_lr) * 0.5 * (1 + math.cos(math.pi * phase))
        )
    return rates


def _rates(optim: OptimConfig) -> list[float]:
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=optim.lr)
    scheduler = _scheduler(optimizer, optim)
    rates = []
    for _ in range(optim.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("warmup", [0, 2])
def test_cosine_follows_its_formula_and_ends_at_min_lr(warmup: int) -> None:
    optim = OptimConfig(schedule="cosine", epochs=8, lr=1e-3, min_lr=5e-5, warmup_epochs=warmup)
    assert _rates(optim) == pytest.approx(_cosine_rates(optim), rel=1e-12)
    assert _rates(optim)[-1] == pytest.approx(optim.min_lr)


def test_a_resumed_cosine_schedule_continues_where_it_stopped() -> None:
    optim = OptimConfig(schedule="cosine", epochs=6, lr=1e-3, warmup_epochs=1)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=optim.lr)
    scheduler = _scheduler(optimizer, optim)
    for _ in range(3):
        optimizer.step()
        scheduler.step()
    saved = json.loads(json.dumps(scheduler.state_dict()))  # as a checkpoint stores it

    fresh = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=optim.lr)
    fresh.load_state_dict(optimizer.state_dict())
    resumed = _scheduler(fresh, optim)
    resumed.load_state_dict(saved)
    for _ in range(2):
        optimizer.step(), scheduler.step()
        fresh.step(), resumed.step()
        assert fresh.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"]


def test_select_last_tests_the_last_epoch(corpus: Path, tmp_path: Path) -> None:
    settings = {"optim.epochs": 3, "optim.schedule": "cosine", "optim.select": "last"}
    fold = train(tiny_run(corpus, tmp_path / "run", **settings)).folds[0]
    assert fold["best_epoch"] == 3
    assert fold["dev_uar"] == fold["history"][-1]["dev_uar"]
    rates = [row["lr"] for row in fold["history"]]
    assert rates == pytest.approx([5e-3, 2.525e-3, 5e-5])  # the rate each epoch trained at


def test_constant_and_linear_follow_their_formulas_after_a_warmup() -> None:
    constant = OptimConfig(schedule="constant", epochs=5, lr=1e-3, warmup_epochs=1)
    assert _rates(constant) == pytest.approx([5e-4, 1e-3, 1e-3, 1e-3, 1e-3], rel=1e-12)
    linear = OptimConfig(schedule="linear", epochs=5, lr=1e-3, min_lr=1e-4, warmup_epochs=1)
    assert _rates(linear) == pytest.approx([5e-4, 1e-3, 7e-4, 4e-4, 1e-4], rel=1e-12)


def test_warmup_steps_move_the_schedule_per_step_and_cannot_fill_the_run() -> None:
    optim = OptimConfig(schedule="cosine", epochs=2, lr=1e-3, min_lr=0, warmup_steps=3)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=optim.lr)
    scheduler = _scheduler(optimizer, optim, 4)  # 8 steps: 3 of warmup, then 5 of decay
    rates = []
    for _ in range(10):  # two more than planned (clips that failed to load) stay at min_lr
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    decay = [0.5 * (1 + math.cos(math.pi * k / 4)) * 1e-3 for k in range(5)]
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, *decay, 0.0, 0.0], abs=1e-15)
    with pytest.raises(ScheduleError, match=r"^optim.warmup_steps 8: the run takes 8 optimiser"):
        _scheduler(optimizer, optim.model_copy(update={"warmup_steps": 8}), 4)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"warmup_epochs": 1, "warmup_steps": 10, "schedule": "cosine"},
            "warmup_epochs 1 and warmup_steps 10: set one of them, not both",
        ),
        ({"warmup_steps": 10}, "warmup_steps 10: schedule plateau has no warmup"),
        ({"schedule": "linear", "epochs": 2, "warmup_epochs": 2}, "the linear schedule has"),
        ({"warmup_steps": -1}, "warmup_steps\n  Input should be greater than or equal to 0"),
        ({"grad_accum_steps": 0}, "grad_accum_steps\n  Input should be greater than or equal to 1"),
        ({"grad_accum_steps": 10**9}, "grad_accum_steps\n  Input should be less than or equal"),
        ({"early_stopping_patience": 0}, "early_stopping_patience\n  Input should be greater"),
        ({"schedule": "step"}, "schedule\n  Input should be 'plateau', 'constant', 'linear'"),
    ],
)
def test_impossible_schedule_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        OptimConfig(**settings)


STALLED = {"optim.epochs": 10, "optim.lr": 1e-9, "optim.early_stopping_patience": 2}
"""A rate too small to change a prediction: dev UAR stays at its first epoch's value."""


def test_early_stopping_stops_when_dev_stalls_and_says_when_and_why(
    corpus: Path, tmp_path: Path
) -> None:
    result = train(tiny_run(corpus, tmp_path / "run", **STALLED))
    fold = result.folds[0]
    assert [row["epoch"] for row in fold["history"]] == [1, 2, 3]
    assert fold["best_epoch"] == 1
    reason = (
        f"dev UAR did not improve for 2 epochs after its best ({fold['dev_uar']:.3f} at epoch 1)"
    )
    assert fold["stopped_early"] == {"epoch": 3, "reason": reason}
    assert f"fold fold1: stopped early after epoch 3 of 10: {reason}\n" in result.summary
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["folds"][0]["stopped_early"] == fold["stopped_early"]


def test_without_patience_a_stalled_run_trains_every_epoch(corpus: Path, tmp_path: Path) -> None:
    settings = {**STALLED, "optim.epochs": 4, "optim.early_stopping_patience": None}
    fold = train(tiny_run(corpus, tmp_path / "run", **settings)).folds[0]
    assert len(fold["history"]) == 4
    assert "stopped_early" not in fold
