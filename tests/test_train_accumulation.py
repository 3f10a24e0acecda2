"""Gradient accumulation: k micro-batches of b give the step that one batch of k × b gives.

The head's dropout draws its masks over the padded batch tensor, whose shape changes when a
batch is cut (each part is padded to its own longest clip), so these tests turn dropout off:
then the gradients agree to float rounding (the sums run in another order), and so do whole
runs. In fp32: bf16 (what ``auto`` picks on a CPU with native bf16) rounds products to 8 bits
of mantissa, far past the tolerance of a sum in another order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _tones import tiny_run

from peft_ser.data.sampler import LengthBucketSampler
from peft_ser.training import train

RANDOM_BATCHES = {
    "threads": 1,
    "data.bucketing": False,
    "optim.epochs": 3,
    "mixed_precision": "no",
}


@pytest.fixture(autouse=True)
def _no_dropout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.nn.Dropout, "forward", lambda self, x: x)


def _numbers(fold: dict[str, Any]) -> list[float]:
    """Every loss and score of a fold's history and test, in order."""
    keys = ("train_loss", "train_uar", "dev_loss", "dev_uar", "lr")
    rows = [row[key] for row in fold["history"] for key in keys]
    return rows + [fold["test"][key] for key in ("uar", "accuracy", "macro_f1")]


@pytest.mark.slow
@pytest.mark.parametrize(("micro", "steps"), [(8, 4), (4, 3)])
def test_accumulated_micro_batches_train_as_the_whole_batch(
    corpus: Path, tmp_path: Path, micro: int, steps: int
) -> None:
    """32 training clips: 4 × 8 is one step of 32 per epoch; 3 × 4 cuts 32 into 12, 12 and a
    last step of 8 in parts of 3, 3 and 2, whose class weights differ from part to part."""
    whole = tiny_run(
        corpus, tmp_path / "whole", **RANDOM_BATCHES, **{"data.batch_size": micro * steps}
    )
    parts = tiny_run(
        corpus, tmp_path / "parts", **RANDOM_BATCHES,
        **{"data.batch_size": micro, "optim.grad_accum_steps": steps},
    )  # fmt: skip
    expected, got = train(whole).folds[0], train(parts).folds[0]
    assert got["best_epoch"] == expected["best_epoch"]
    assert _numbers(got) == pytest.approx(_numbers(expected), rel=1e-5, abs=1e-7)


@pytest.mark.parametrize(("micro", "steps"), [(8, 4), (4, 3)])
def test_an_accumulated_step_applies_the_whole_batch_gradient(
    corpus: Path, tmp_path: Path, micro: int, steps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[torch.Tensor]] = []
    step = torch.optim.Adam.step

    def recording(self: torch.optim.Adam, *args: Any, **kwargs: Any) -> Any:
        params = [p for group in self.param_groups for p in group["params"]]
        seen.append([p.grad.clone() for p in params if p.grad is not None])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording)
    one_epoch = {**RANDOM_BATCHES, "optim.epochs": 1}
    train(tiny_run(corpus, tmp_path / "whole", **one_epoch, **{"data.batch_size": micro * steps}))
    whole, seen[:] = list(seen), []
    accumulated = {"data.batch_size": micro, "optim.grad_accum_steps": steps}
    train(tiny_run(corpus, tmp_path / "parts", **one_epoch, **accumulated))
    assert len(seen) == len(whole) == -(-32 // (micro * steps))
    for ours, theirs in zip(seen, whole, strict=True):
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_micro_batches_cut_each_global_batch_in_order() -> None:
    lengths = list(range(10))
    whole = LengthBucketSampler(lengths, 4, shuffle=True, bucketing=False, seed=3)
    parts = LengthBucketSampler(lengths, 4, shuffle=True, bucketing=False, seed=3, accumulate=3)
    batches = whole.global_batches()
    assert [len(b) for b in batches] == [4, 4, 2]
    assert parts.step_sizes() == [3, 3, 2]
    assert list(parts) == parts.micro_batches()
    assert len(parts) == 8
    assert [i for b in parts for i in b] == [i for b in batches for i in b]
    assert [len(b) for b in parts] == [2, 1, 1, 2, 1, 1, 1, 1]
