"""The one CCC and the one class-weighted cross entropy: the loss training differentiates and
the numbers reports show agree, edge cases included."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from peft_ser.config import OptimConfig
from peft_ser.data.dataset import Batch
from peft_ser.evaluation.metrics import concordance_cc
from peft_ser.evaluation.objectives import Objective
from peft_ser.models.tasks import OutputLayout, concordance, weighted_cross_entropy
from peft_ser.training.tracker import EpochTracker

RATINGS = st.integers(-50, 50).map(lambda tenths: tenths / 10)
"""Ratings on a grid of 0.1 in [-5, 5], like the corpora's scales."""


@st.composite
def columns(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    """Two columns of one length (0 to 12), each varying or constant."""
    size = draw(st.integers(0, 12))

    def column() -> list[float]:
        if draw(st.booleans()):
            return [draw(RATINGS)] * size
        return draw(st.lists(RATINGS, min_size=size, max_size=size))

    return column(), column()


@settings(max_examples=300, deadline=None)
@given(columns())
def test_the_float32_loss_and_the_float64_metric_agree(pair: tuple[list, list]) -> None:
    truth32, pred32 = (np.asarray(values, dtype=np.float32) for values in pair)
    metric = concordance_cc(truth32, pred32)  # float64 of the very values the loss sees
    loss_side = concordance(torch.from_numpy(pred32)[:, None], torch.from_numpy(truth32)[:, None])
    assert float(loss_side[0]) == pytest.approx(metric, abs=1e-5)
    assert -1.0 - 1e-12 <= metric <= 1.0 + 1e-12
    constant = len(set(pair[0])) <= 1 or len(set(pair[1])) <= 1
    if constant:  # no item, or a side without variation: nothing to agree on, in both
        assert metric == 0.0 and float(loss_side[0]) == 0.0


@pytest.mark.parametrize("value", [0.1, 1 / 3, 4.7, -2.3])
@pytest.mark.parametrize("size", [1, 3, 7, 100])
def test_equal_constants_score_zero_not_one(value: float, size: int) -> None:
    # A plain mean of equal floats can round off them: the variance left over made two equal
    # constant columns score 1 in the metric (0.1 three times did) and ~0 in the loss.
    assert concordance_cc([value] * size, [value] * size) == 0.0
    for dtype in (torch.float32, torch.float64):
        column = torch.full((size, 1), value, dtype=dtype)
        assert float(concordance(column, column.clone())[0]) == 0.0


def test_the_ccc_loss_keeps_a_gradient_for_constant_predictions() -> None:
    # a collapsed head (one value for every clip) must still be pushed towards the ratings
    predicted = torch.full((4, 1), 2.0, requires_grad=True)
    target = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    (1 - concordance(predicted, target)).sum().backward()
    assert predicted.grad is not None and predicted.grad.abs().sum() > 0


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 9),
    st.integers(0, 2**31 - 1),
    st.lists(st.floats(0.0, 4.0), min_size=4, max_size=4),
)
def test_one_cross_entropy_for_the_step_the_epoch_and_the_split(
    size: int, seed: int, class_weights: list[float]
) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(size, 4, generator=generator)
    labels = torch.randint(0, 4, (size,), generator=generator)
    weights = torch.tensor(class_weights)
    items = weighted_cross_entropy(logits, labels, weights, reduction="none")
    plain = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    assert torch.equal(items, plain * weights[labels])
    total = float(weights[labels].sum())
    expected = float(items.sum()) / total if total else math.nan
    step = float(weighted_cross_entropy(logits, labels, weights))
    objective = Objective(OutputLayout("categorical", 4, 0), list("abcd"), [], OptimConfig(),
                          weights, {})  # fmt: skip
    batch = Batch(torch.zeros(size, 1), torch.ones(size, dtype=torch.long), labels,
                  torch.arange(size), [])  # fmt: skip
    tracker = EpochTracker(objective)
    tracker.add(logits, batch)
    for value in (step, float(objective.loss(logits, batch, "train")), tracker.loss()):
        assert value == pytest.approx(expected, rel=1e-5, nan_ok=True)
    assert weighted_cross_entropy(logits, labels).item() == pytest.approx(float(plain.mean()))
