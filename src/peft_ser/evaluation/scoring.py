"""Moving batches to the model and running it over whole splits, shared by training and scoring.

`gather_rows` is the one loop over a split: every batch on every process, under inference
mode, gathered into one row per item; `gather_outputs` keeps each item's output row. What the
rows score is the task objective's (`peft_ser.evaluation.objectives`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from torch import nn
from torch.utils.data import DataLoader

from peft_ser.data.dataset import Batch, UtteranceDataset, collate
from peft_ser.data.sampler import LengthBucketSampler
from peft_ser.data.states import FeatureBatch

Row = TypeVar("Row")


@dataclass
class Outputs:
    """Gathered outputs of one split in dataset index order; rows that are not finite are
    left out of ``indices`` and ``values`` and listed in ``nonfinite``."""

    indices: list[int]
    values: np.ndarray
    nonfinite: list[int]


def gather_outputs(
    accelerator: Accelerator,
    module: nn.Module,
    batches: Iterable[Batch | FeatureBatch | None],
    size: int,
) -> Outputs:
    """Every batch's output rows on every process, gathered, one per item (`gather_rows`)."""
    rows = gather_rows(accelerator, module, batches, size, lambda out, _: out.cpu().tolist())
    finite = [i for i, row in rows.items() if all(math.isfinite(v) for v in row)]
    width = len(next(iter(rows.values()))) if rows else 0
    values = np.array([rows[i] for i in finite], dtype=np.float64).reshape(len(finite), width)
    kept = set(finite)
    return Outputs(finite, values, [i for i in rows if i not in kept])


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
