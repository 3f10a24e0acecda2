"""The learning-rate schedules and the choice of the tested epoch."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from _tones import tiny_run

from peft_ser.config import OptimConfig
from peft_ser.training import train
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
