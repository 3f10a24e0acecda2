"""Moving batches to the model and scoring whole splits, shared by training and `evaluate`.

`gather_rows` is the one scoring loop: every batch on every process, under inference mode,
gathered into one row per item. `predict` makes class predictions and the loss of them; the
task objectives (`peft_ser.evaluation.objectives`) keep every output value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn
from torch.utils.data import DataLoader

from peft_ser.data.dataset import Batch, UtteranceDataset, collate
from peft_ser.data.sampler import LengthBucketSampler
from peft_ser.data.states import FeatureBatch


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


_Scored: TypeAlias = tuple[int, float, float]
"""One item's predicted class (-1: its logits are not finite), weighted loss and weight."""
Row = TypeVar("Row")


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
    `torch.inference_mode` (see `gather_rows`).
    """

    def scored(logits: torch.Tensor, batch: Batch | FeatureBatch) -> Iterable[_Scored]:
        finite = torch.isfinite(logits).all(dim=-1).cpu()
        losses = nn.functional.cross_entropy(logits, batch.labels, reduction="none").cpu()
        weights = (
            torch.ones_like(losses) if class_weights is None else class_weights[batch.labels.cpu()]
        )
        predicted = torch.where(finite, logits.argmax(dim=-1).cpu(), -1)
        return zip(predicted.tolist(), (losses * weights).tolist(), weights.tolist(), strict=True)

    rows = gather_rows(accelerator, module, batches, size, scored)
    valid = [i for i, (predicted, _, _) in rows.items() if predicted >= 0]
    weight = sum(rows[i][2] for i in valid)
    return Predictions(
        indices=valid,
        predicted=[rows[i][0] for i in valid],
        loss=sum(rows[i][1] for i in valid) / weight if weight else math.nan,
        nonfinite=[i for i, (predicted, _, _) in rows.items() if predicted < 0],
    )


def gather_rows(
    accelerator: Accelerator,
    module: nn.Module,
    batches: Iterable[Batch | FeatureBatch | None],
    size: int,
    rows: Callable[[torch.Tensor, Batch | FeatureBatch], Iterable[Row]],
) -> dict[int, Row]:
    """Run ``module`` on every batch on every process and gather ``rows(outputs, batch)``, one
    row per item, by dataset index in ascending order; indices from ``size`` on (the padding
    items that even out processes' batches) are left out.

    ``outputs`` are the module's float outputs, computed on the accelerator's device under its
    autocast. Runs under `torch.inference_mode`: no autograd graph, no version counters.
    """
    local: list[tuple[int, Row]] = []
    with torch.inference_mode():
        for batch in batches:
            if batch is None:
                continue
            batch = to_device(batch, accelerator.device)
            with accelerator.autocast():
                outputs = forward(module, batch).float()
            local += zip(batch.indices.tolist(), rows(outputs, batch), strict=True)
    gathered = gather_object(local) if accelerator.num_processes > 1 else local
    by_index = dict(gathered)
    return {index: by_index[index] for index in sorted(by_index) if index < size}


def forward(module: nn.Module, batch: Batch | FeatureBatch) -> torch.Tensor:
    """The module's outputs for a batch: from cached hidden states, or from waveforms."""
    if isinstance(batch, FeatureBatch):
        return module(batch.hidden, batch.frame_lengths)
    return module(batch.waveforms, batch.lengths)


def loader_batches(
    dataset: UtteranceDataset, sampler: LengthBucketSampler, num_workers: int
) -> Iterator[Batch]:
    """The sampler's batches, loaded in ``num_workers`` processes.

    The loader gets a generator of its own: creating a `DataLoader` iterator draws a seed from
    its generator, which by default is torch's global one (dropout's); the items' randomness
    comes from ``(seed, epoch, index)`` (`UtteranceDataset`), not from that seed.
    """
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=collate,
        num_workers=num_workers,
        generator=torch.Generator(),
    )
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
