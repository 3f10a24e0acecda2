"""Moving batches to the model and scoring whole splits, shared by training and `evaluate`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn
from torch.utils.data import DataLoader

from peft_ser.data import Batch, FeatureBatch, LengthBucketSampler, UtteranceDataset, collate


@dataclass
class Predictions:
    """Gathered predictions of one split, in dataset index order.

    Items whose logits are not finite have no prediction: they are listed in ``nonfinite``
    and left out of ``indices``, ``predicted`` and the loss.
    """

    indices: list[int]
    predicted: list[int]
    loss: float
    nonfinite: list[int]


def predict(
    accelerator: Accelerator,
    module: nn.Module,
    batches: Iterable[Batch | FeatureBatch | None],
    class_weights: torch.Tensor | None,
    size: int,
) -> Predictions:
    """Predict every batch on every process, gather, and keep one prediction per item.

    The loss is the class-weighted cross entropy of the training objective (plain when
    ``class_weights`` is None), averaged over items like the training loss. Runs under
    `torch.inference_mode`: no autograd graph, no version counters.
    """
    local: list[tuple[int, int, float, float]] = []
    with torch.inference_mode():
        for batch in batches:
            if batch is None:
                continue
            batch = to_device(batch, accelerator.device)
            with accelerator.autocast():
                logits = (
                    module(batch.hidden, batch.frame_lengths)
                    if isinstance(batch, FeatureBatch)
                    else module(batch.waveforms, batch.lengths)
                ).float()
            finite = torch.isfinite(logits).all(dim=-1).cpu()
            losses = nn.functional.cross_entropy(logits, batch.labels, reduction="none").cpu()
            weights = (
                torch.ones_like(losses)
                if class_weights is None
                else class_weights[batch.labels.cpu()]
            )
            predicted = torch.where(finite, logits.argmax(dim=-1).cpu(), -1)
            local += zip(
                batch.indices.tolist(),
                predicted.tolist(),
                (losses * weights).tolist(),
                weights.tolist(),
                strict=True,
            )
    gathered = gather_object(local) if accelerator.num_processes > 1 else local
    rows = {row[0]: row for row in gathered}
    ordered = [rows[i] for i in sorted(rows) if i < size]
    valid = [r for r in ordered if r[1] >= 0]
    weight = sum(r[3] for r in valid)
    return Predictions(
        indices=[r[0] for r in valid],
        predicted=[r[1] for r in valid],
        loss=sum(r[2] for r in valid) / weight if weight else math.nan,
        nonfinite=[r[0] for r in ordered if r[1] < 0],
    )


def loader_batches(
    dataset: UtteranceDataset, sampler: LengthBucketSampler, num_workers: int
) -> Iterator[Batch]:
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)
    yield from loader


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, FeatureBatch):
        return FeatureBatch(
            batch.hidden.to(device),
            batch.frame_lengths.to(device),
            batch.labels.to(device),
            batch.indices,
        )
    return Batch(
        batch.waveforms.to(device),
        batch.lengths.to(device),
        batch.labels.to(device),
        batch.indices,
        batch.errors,
    )
