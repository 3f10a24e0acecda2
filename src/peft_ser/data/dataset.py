"""From utterances to batches: loading, cropping, augmentation, length buckets, cached states.

Every random choice here (the batch order of an epoch, the augmentation of a clip) is drawn
from a generator seeded by ``(seed, epoch[, item])`` rather than from global state. That makes
an epoch's batches and augmentations independent of the number of data-loading workers, of the
number of processes and of whether the run was interrupted and resumed, which is what lets a
resumed run end with exactly the results of an uninterrupted one.

A file that cannot be decoded does not stop training: its item comes back with the error
instead of samples, `collate` drops it from the batch and reports it in ``Batch.errors``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from peft_ser.data.audio import SAMPLE_RATE, AudioError, RunAudio, load_audio
from peft_ser.data.augment import AugmentConfig
from peft_ser.data.feature_store import FeatureStore
from peft_ser.data.manifest import Utterance
from peft_ser.utils.errors import environment_problem

log = logging.getLogger(__name__)


def add_gaussian_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Add white Gaussian noise at ``snr_db`` relative to the clip's mean power."""
    power = float(np.mean(np.square(wave), dtype=np.float64))
    noise_std = math.sqrt(power / 10 ** (snr_db / 10))
    noise = rng.standard_normal(wave.shape[0], dtype=np.float32) * noise_std
    return (wave + noise).astype(np.float32)


def time_mask(wave: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Silence one contiguous stretch covering ``fraction`` of the clip, at a random place."""
    width = round(fraction * wave.shape[0])
    if width == 0:
        return wave
    start = int(rng.integers(0, wave.shape[0] - width + 1))
    masked = wave.copy()
    masked[start : start + width] = 0.0
    return masked


def augment(wave: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Noise then time mask, each applied with its own probability (as audiomentations did)."""
    if rng.random() < config.noise_p:
        wave = add_gaussian_noise(wave, float(rng.uniform(*config.snr_db)), rng)
    if rng.random() < config.time_mask_p:
        wave = time_mask(wave, float(rng.uniform(*config.time_mask_fraction)), rng)
    return wave


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
    epochs after the first (and later folds) do not decode the files again.

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
        self.label_ids = {name: i for i, name in enumerate(labels)}
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


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar-length items that stay mixed in labels, in an order fixed by
    ``(seed, epoch)``.

    Sorting clips by length before batching saves padding, but in emotional speech length
    follows the label (sad speech is slower, angry speech faster): length-sorted batches hold
    one emotion each, and a model trained on them chases the last batch and can stay at chance.
    With ``labels`` given, items are therefore sorted by their length *rank within their own
    label* (stratified bucketing): a batch takes the clips at the same length quantile of every
    class, so labels are mixed in their training proportions, and lengths are as similar as the
    label-length relation allows (as similar as plain sorting when length does not follow the
    label). A jitter of up to ``jitter`` batches on the rank lets batch membership change from
    epoch to epoch: with one batch, about 30 % of a clip's batch-mates recur in the next epoch
    on the 96-clip demo fold (8 % with random batches, 46 % with half a batch).

    With ``shuffle``, items are permuted, cut into pools of ``pool × batch_size`` items, each
    pool is sorted (as above) and cut into batches, and the batches are shuffled. Without
    ``shuffle`` (for evaluation, where batch composition cannot change a result) items are
    simply sorted by length. ``bucketing=False`` gives plain random (or in-order) batches.

    ``batch_size`` is the global batch: with ``num_replicas`` processes, each global batch is
    dealt out across the processes (rank ``r`` takes items ``r, r + n, …``), so every process
    runs the same number of steps and the optimisation sees the same batches as on one
    process. A global batch smaller than ``num_replicas`` is topped up with repeats.

    Without ``shuffle``, ``max_batch_samples`` also bounds each batch's padded size (items ×
    longest item): sorted evaluation batches then hold many short clips or a few long ones,
    so a large evaluation batch cannot exhaust memory on the longest clips. A batch is also
    cut where its padding would pass ``max_padding`` of its padded size: on a small split the
    budget alone lets one batch span the short clips from 0.6 s to 4 s (38 % of a 32-clip
    IEMOCAP-like split padded, 6.5 % with the bound, in 10 batches instead of 2), while a
    large split's sorted neighbours are close in length anyway (1,100 clips: 33 batches
    instead of 31).
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        shuffle: bool,
        labels: Sequence[int] | None = None,
        bucketing: bool = True,
        pool: int = 50,
        jitter: float = 1.0,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        max_batch_samples: int | None = None,
        max_padding: float = 0.1,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.max_batch_samples = max_batch_samples
        self.max_padding = max_padding
        self.labels = None if labels is None else np.asarray(labels)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.bucketing = bucketing
        self.pool = pool
        self.jitter = jitter
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[list[int]]:
        """This epoch's batches before they are dealt out across processes."""
        rng = np.random.default_rng([self.seed, self.epoch])
        count = self.lengths.shape[0]
        order = rng.permutation(count) if self.shuffle else np.arange(count)
        if self.bucketing and self.shuffle:
            pool_size = self.pool * self.batch_size
            pools = [order[i : i + pool_size] for i in range(0, count, pool_size)]
            order = np.concatenate([self._sorted_pool(p, rng) for p in pools] or [order])
        elif self.bucketing:
            order = order[np.argsort(self.lengths[order], kind="stable")]
        if self.max_batch_samples is not None and not self.shuffle:
            batches = self._within_budget(order)
        else:
            batches = [
                order[i : i + self.batch_size].tolist() for i in range(0, count, self.batch_size)
            ]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def _within_budget(self, order: np.ndarray) -> list[list[int]]:
        """Cut ``order`` into batches of at most ``batch_size`` items whose padded size
        (items × longest) stays within ``max_batch_samples`` (a longer clip goes alone) and
        whose padding stays within ``max_padding`` of it (a batch of one has none)."""
        assert self.max_batch_samples is not None
        batches: list[list[int]] = []
        current: list[int] = []
        longest = filled = 0  # the current batch's longest item and its unpadded samples
        for item in order.tolist():
            length = int(self.lengths[item])
            padded = (len(current) + 1) * max(longest, length)
            too_big = padded > self.max_batch_samples
            too_padded = filled + length < (1 - self.max_padding) * padded
            if current and (len(current) == self.batch_size or too_big or too_padded):
                batches.append(current)
                current, longest, filled = [], 0, 0
            current.append(item)
            longest, filled = max(longest, length), filled + length
        return batches + ([current] if current else [])

    def _sorted_pool(self, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The pool's items ordered by (jittered) length rank within their label."""
        groups = np.zeros(pool.shape[0]) if self.labels is None else self.labels[pool]
        quantile = np.empty(pool.shape[0])
        for group in np.unique(groups):
            members = np.flatnonzero(groups == group)
            ranks = np.empty(members.shape[0])
            ranks[np.argsort(self.lengths[pool[members]], kind="stable")] = np.arange(len(members))
            quantile[members] = (ranks + 0.5) / members.shape[0]
        batch_width = min(1.0, self.batch_size / pool.shape[0])
        jitter = rng.uniform(-1.0, 1.0, pool.shape[0]) * batch_width * self.jitter
        return pool[np.argsort(quantile + jitter, kind="stable")]

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches():
            while len(batch) < self.num_replicas:
                batch = batch + batch[: self.num_replicas - len(batch)]
            yield batch[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        if self.max_batch_samples is not None and not self.shuffle:
            return len(self.global_batches())
        return math.ceil(self.lengths.shape[0] / self.batch_size)


def padding_waste(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """Share of a batch tensor's cells that are padding, over all batches."""
    sizes = np.asarray(lengths)
    used = sum(int(sizes[b].sum()) for b in batches if len(b))
    allocated = sum(len(b) * int(sizes[b].max()) for b in batches if len(b))
    return 1.0 - used / allocated if allocated else 0.0


def states_crop(utterance: Utterance, max_samples: int | None) -> int | None:
    """The crop that shapes a clip's states: ``max_samples`` where the clip is longer (with a
    1-ms margin for the manifest's rounding of its duration), else None, the whole clip; so the
    states of a clip shorter than the training crop serve its training and evaluation alike."""
    if max_samples is None or expected_length(utterance, None) + 16 <= max_samples:
        return None
    return max_samples


class FeatureCache:
    """Hidden states of a frozen backbone, one ``[L+1, F, D]`` tensor per utterance and crop.

    Entries are keyed by utterance key and crop (`states_crop`), since a cropped clip and the
    whole clip have different states. States are kept on the CPU in float16 (half the memory;
    the head computes in float32). ``fingerprint`` identifies the backbone, audio front end
    and precision the states came from: `bind` to a different one empties the cache.

    With a ``store`` (`FeatureStore`), states also persist on disk, keyed by the audio's
    content: `recall` reads what another fold, run or process stored, and `put` stores.
    """

    def __init__(self, store: FeatureStore | None = None) -> None:
        self.fingerprint: str | None = None
        self.store = store
        self._states: dict[tuple[str, int | None], torch.Tensor] = {}

    def bind(self, fingerprint: str) -> None:
        if fingerprint != self.fingerprint:
            self._states.clear()
            self.fingerprint = fingerprint

    def __contains__(self, entry: tuple[str, int | None]) -> bool:
        return entry in self._states

    def __len__(self) -> int:
        return len(self._states)

    def put(
        self, key: str, crop: int | None, states: torch.Tensor, content: str | None = None
    ) -> None:
        """Keep ``states``; with a store and the audio's ``content`` digest, store them too."""
        kept = states.detach().to("cpu", torch.float16)
        self._states[(key, crop)] = kept
        if self.store is not None and content is not None and self.fingerprint is not None:
            try:
                self.store.save(self.store.entry(self.fingerprint, content, crop), kept)
            except OSError as error:
                self.without_store(error)

    def without_store(self, error: OSError) -> None:
        """Go on in memory alone after the store refused a write (a full disk, a read-only
        folder): it is a cache, so the run loses time, never results; one warning says so."""
        assert self.store is not None
        log.warning(
            "feature cache: cannot write to %s (%s); this run goes on without the persistent "
            "cache", self.store.root, environment_problem(error) or error,
        )  # fmt: skip
        self.store = None

    def recall(self, key: str, crop: int | None, content: str) -> bool:
        """Whether the states are at hand: in memory, or read into memory from the store."""
        if (key, crop) in self._states:
            return True
        if self.store is None or self.fingerprint is None:
            return False
        states = self.store.load(self.store.entry(self.fingerprint, content, crop))
        if states is None:
            return False
        self._states[(key, crop)] = states
        return True

    def get(self, key: str, crop: int | None) -> torch.Tensor:
        return self._states[(key, crop)]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._states.values())


@dataclass
class FeatureBatch:
    """Padded cached states ``[L+1, B, F, D]`` with frame lengths, labels, dataset indices."""

    hidden: torch.Tensor
    frame_lengths: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def stack_states(
    states: Sequence[torch.Tensor], labels: Sequence[int], indices: Sequence[int]
) -> FeatureBatch:
    """Zero-pad per-utterance states along frames and stack them on a batch axis (float32)."""
    layers, dim = states[0].shape[0], states[0].shape[2]
    longest = max(s.shape[1] for s in states)
    hidden = torch.zeros(layers, len(states), longest, dim)
    for row, state in enumerate(states):
        hidden[:, row, : state.shape[1]].copy_(state)  # widens stored half precision in place
    return FeatureBatch(
        hidden=hidden,
        frame_lengths=torch.tensor([s.shape[1] for s in states]),
        labels=torch.tensor(list(labels), dtype=torch.long),
        indices=torch.tensor(list(indices), dtype=torch.long),
    )
