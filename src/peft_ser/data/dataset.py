"""From utterances to items and batches: loading, cropping and augmenting clips, padding them.

A clip's augmentation is drawn from a generator seeded by ``(seed, epoch, item)`` rather than
from global state, so it does not depend on the number of data-loading workers or processes or
on whether the run was interrupted and resumed (the batch order has its own generator, in
`peft_ser.data.sampler`).

A file that cannot be decoded does not stop training: its item comes back with the error
instead of samples, `collate` drops it from the batch and reports it in ``Batch.errors``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset

from peft_ser.data.audio import SAMPLE_RATE, AudioError, load_audio
from peft_ser.data.audio_cache import RunAudio
from peft_ser.data.augment import AugmentConfig, augment
from peft_ser.data.manifest import Utterance

NO_LABEL = -1
"""The class id of an utterance without a majority label in the label set (label ""; kept for
its annotator votes alone): batches carry it, and only the distribution task trains on it."""


def seconds_to_samples(seconds: float | None) -> int | None:
    """A crop length in samples at 16 kHz (``None`` stays ``None``: keep the whole clip)."""
    return None if seconds is None else max(1, round(seconds * SAMPLE_RATE))


def expected_length(utterance: Utterance, max_samples: int | None) -> int:
    """Samples the loaded clip will have, from the manifest's duration (no decoding)."""
    samples = max(1, round(utterance.duration * SAMPLE_RATE))
    return samples if max_samples is None else min(samples, max_samples)


@dataclass(frozen=True)
class Example:
    """One loaded item: samples, or the reason they could not be loaded."""

    index: int
    label: int
    waveform: np.ndarray | None
    error: str | None = None


class UtteranceDataset(Dataset[Example]):
    """Utterances as examples: decoded, cropped to their first ``max_samples``, augmented.

    With ``decoded`` (`RunAudio`), clips come from the run's decoded-audio cache, so that
    epochs after the first (and later folds) do not decode the files again, and over a corpus
    warmed by `peft-ser preprocess` the first does not either.

    Augmentation draws from a generator seeded by ``(seed, epoch, index)``; call `set_epoch`
    before each epoch's loader is iterated (workers receive a fresh copy each epoch).
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        labels: Sequence[str],
        max_samples: int | None = None,
        augmentation: AugmentConfig | None = None,
        seed: int = 0,
        decoded: RunAudio | None = None,
    ) -> None:
        self.utterances = list(utterances)
        self.decoded = decoded
        self.label_names = list(labels)
        self.label_ids = {"": NO_LABEL, **{name: i for i, name in enumerate(labels)}}
        self.max_samples = max_samples
        self.augmentation = augmentation if augmentation and augmentation.enabled else None
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.utterances)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def lengths(self) -> list[int]:
        """Expected sample counts of the items, for length bucketing."""
        return [expected_length(u, self.max_samples) for u in self.utterances]

    def label_of(self, index: int) -> int:
        return self.label_ids[self.utterances[index].label]

    def __getitem__(self, index: int) -> Example:
        utterance = self.utterances[index]
        label = self.label_ids[utterance.label]
        try:
            if self.decoded is not None:
                wave = self.decoded.load(utterance.path, utterance.start, utterance.end)
            else:
                wave = load_audio(utterance.path, start=utterance.start, end=utterance.end)
        except AudioError as error:
            return Example(index, label, None, str(error))
        wave = wave[: self.max_samples]
        if self.augmentation is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            wave = augment(wave, self.augmentation, rng)
        return Example(index, label, wave)


@dataclass
class Batch:
    """Padded waveforms ``[B, T]`` with their true lengths, labels and dataset indices."""

    waveforms: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    errors: list[tuple[int, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def collate(examples: Sequence[Example]) -> Batch:
    """Zero-pad the loaded examples to the longest; failed ones go to ``errors`` instead."""
    loaded = [e for e in examples if e.waveform is not None]
    errors = [(e.index, e.error or "unknown error") for e in examples if e.waveform is None]
    longest = max((e.waveform.shape[0] for e in loaded if e.waveform is not None), default=0)
    waveforms = torch.zeros(len(loaded), longest)
    for row, example in enumerate(loaded):
        assert example.waveform is not None
        waveforms[row, : example.waveform.shape[0]] = torch.from_numpy(example.waveform)
    return Batch(
        waveforms=waveforms,
        lengths=torch.tensor([e.waveform.shape[0] for e in loaded if e.waveform is not None]),
        labels=torch.tensor([e.label for e in loaded], dtype=torch.long),
        indices=torch.tensor([e.index for e in loaded], dtype=torch.long),
        errors=errors,
    )
