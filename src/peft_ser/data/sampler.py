"""The order of an epoch's items: batches of similar length mixed in labels, in an order fixed by
``(seed, epoch)``.

The batch order is drawn from a generator seeded by ``(seed, epoch)`` rather than from global
state, so an epoch's batches do not depend on the number of data-loading workers or processes
or on whether the run was interrupted and resumed: a resumed run ends with exactly the results
of an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


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

    Exact proportions cost padding on a small pool: each label's own length quantiles differ
    from the pool's by sampling noise (256 clips of IEMOCAP-like lengths unrelated to the
    label, six-second crops, batches of 32: 13.8 % padded even without jitter, against 8.0 %
    sorted by length alone; mean of ten seeds, bench/bench_sampler.py). With ``slack`` set, a
    pool is instead laid out by its (jittered) length rank, one clip at a time, the shortest
    next, except that a label may run ahead of its share of the clips laid out so far by at
    most its allowance, ``slack`` × its share of a batch (at least one clip), and goes next
    when it falls further behind than that. Every batch then holds each label within twice its
    allowance of the label's share of the batch, and padding comes near that of sorting by
    length where length does not follow the label (12.5 % at ``slack=0.5``, jitter 0.5, on
    the case above).

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
        slack: float | None = None,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        max_batch_samples: int | None = None,
        max_padding: float = 0.1,
        accumulate: int = 1,
    ) -> None:
        self.accumulate = accumulate
        self.lengths = np.asarray(lengths)
        self.max_batch_samples = max_batch_samples
        self.max_padding = max_padding
        self.labels = None if labels is None else np.asarray(labels)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.bucketing = bucketing
        self.pool = pool
        self.jitter = jitter
        self.slack = slack
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

    def micro_batches(self) -> list[list[int]]:
        """This epoch's global batches, each cut into ``accumulate`` near-equal parts."""
        batches = self.global_batches()
        if self.accumulate == 1:
            return batches
        return [
            part.tolist()
            for batch in batches
            for part in np.array_split(np.asarray(batch), min(self.accumulate, len(batch)))
        ]

    def step_sizes(self) -> list[int]:
        """How many consecutive micro-batches make each optimiser step, in order."""
        return [min(self.accumulate, len(batch)) for batch in self.global_batches()]

    def _within_budget(self, order: np.ndarray) -> list[list[int]]:
        """Cut ``order`` into batches of at most ``batch_size`` items whose padded size
        (items × longest) stays within ``max_batch_samples`` (a longer clip goes alone) and
        whose padding stays within ``max_padding`` of it (a batch of one has none)."""
        assert self.max_batch_samples is not None
        return cut_by_padding(
            order, self.lengths, self.max_padding, self.batch_size, self.max_batch_samples
        )

    def _sorted_pool(self, pool: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The pool's items ordered by (jittered) length rank within their label, or with
        ``slack``, laid out by `_laid_out`."""
        groups = np.zeros(pool.shape[0]) if self.labels is None else self.labels[pool]
        if self.slack is not None:
            key = _quantiles(self.lengths[pool]) + self._jitter(pool.shape[0], rng)
            return pool[_laid_out(key, groups, self.slack * self.batch_size)]
        quantile = np.empty(pool.shape[0])
        for group in np.unique(groups):
            members = np.flatnonzero(groups == group)
            quantile[members] = _quantiles(self.lengths[pool[members]])
        return pool[np.argsort(quantile + self._jitter(pool.shape[0], rng), kind="stable")]

    def _jitter(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """Up to ``jitter`` batches of a pool of ``count`` items, on a 0-1 scale, uniformly."""
        batch_width = min(1.0, self.batch_size / count)
        return rng.uniform(-1.0, 1.0, count) * batch_width * self.jitter

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.micro_batches():
            while len(batch) < self.num_replicas:
                batch = batch + batch[: self.num_replicas - len(batch)]
            yield batch[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        if self.max_batch_samples is not None and not self.shuffle:
            return len(self.global_batches())
        if self.accumulate > 1:
            return len(self.micro_batches())
        return math.ceil(self.lengths.shape[0] / self.batch_size)


def cut_by_padding(
    order: Sequence[int] | np.ndarray,
    lengths: Sequence[int] | np.ndarray,
    max_padding: float,
    max_items: int | None = None,
    max_samples: int | None = None,
) -> list[list[int]]:
    """Cut ``order`` (items, sorted by length) into consecutive runs, each cut where adding the
    next item would pad more than ``max_padding`` of the run's padded size (items × longest),
    or pass ``max_items`` items or ``max_samples`` padded samples (a longer item goes alone)."""
    sizes = np.asarray(lengths)
    runs: list[list[int]] = []
    current: list[int] = []
    longest = filled = 0  # the current run's longest item and its unpadded samples
    for item in np.asarray(order).tolist():
        length = int(sizes[item])
        padded = (len(current) + 1) * max(longest, length)
        too_many = max_items is not None and len(current) == max_items
        too_big = max_samples is not None and padded > max_samples
        too_padded = filled + length < (1 - max_padding) * padded
        if current and (too_many or too_big or too_padded):
            runs.append(current)
            current, longest, filled = [], 0, 0
        current.append(item)
        longest, filled = max(longest, length), filled + length
    return runs + ([current] if current else [])


def length_groups(lengths: Sequence[int] | np.ndarray, max_padding: float) -> list[list[int]]:
    """A batch's rows in groups of similar length, each padded at most ``max_padding`` of its
    padded size: the groups a training batch runs through the encoder in (see
    `peft_ser.models.backbones.base.Backbone.group_padding`)."""
    return cut_by_padding(np.argsort(lengths, kind="stable"), lengths, max_padding)


def padding_waste(
    batches: Sequence[Sequence[int]],
    lengths: Sequence[int],
    max_padding: float | None = None,
) -> float:
    """Share of the padded cells the encoder computes that are padding, over all batches; with
    ``max_padding``, each batch runs in its `length_groups`."""
    sizes = np.asarray(lengths)
    used = allocated = 0
    for batch in batches:
        if not len(batch):
            continue
        rows = np.asarray(batch)
        groups = (
            [rows]
            if max_padding is None
            else [rows[g] for g in length_groups(sizes[rows], max_padding)]
        )
        used += sum(int(sizes[g].sum()) for g in groups)
        allocated += sum(len(g) * int(sizes[g].max()) for g in groups)
    return 1.0 - used / allocated if allocated else 0.0


def _quantiles(lengths: np.ndarray) -> np.ndarray:
    """Each item's length rank on a 0-1 scale (ties in their given order)."""
    ranks = np.empty(lengths.shape[0])
    ranks[np.argsort(lengths, kind="stable")] = np.arange(lengths.shape[0])
    return (ranks + 0.5) / lengths.shape[0]


def _laid_out(key: np.ndarray, groups: np.ndarray, slack_items: float) -> np.ndarray:
    """Positions ordered by ``key``, one at a time, each group (label) kept near its share of
    every prefix: after ``p`` items a group of share ``s`` should hold ``s·p``; it may run up
    to ``max(1, s · slack_items)`` items (its allowance) ahead, and goes next when more than
    that behind. Some group may always go: before each item the groups' leads sum to -1, so
    one is behind, and an allowance of at least one item lets it take one more.
    """
    names, group_of = np.unique(groups, return_inverse=True)
    queues = [np.flatnonzero(group_of == g) for g in range(names.shape[0])]
    queues = [members[np.argsort(key[members], kind="stable")] for members in queues]
    keys = [key[queue].tolist() for queue in queues]
    share = [queue.shape[0] / key.shape[0] for queue in queues]
    allowance = [max(1.0, s * slack_items) for s in share]
    taken = [0] * len(queues)
    order = []
    for laid in range(1, key.shape[0] + 1):
        lead = [taken[g] - share[g] * laid for g in range(len(queues))]
        may_go = [
            g
            for g in range(len(queues))
            if taken[g] < len(keys[g]) and lead[g] + 1 <= allowance[g] + 1e-9
        ]
        behind = [g for g in may_go if -lead[g] > allowance[g]]
        if behind:
            group = min(behind, key=lambda g: lead[g])
        else:
            group = min(may_go, key=lambda g: keys[g][taken[g]])
        order.append(queues[group][taken[group]])
        taken[group] += 1
    return np.asarray(order, dtype=int)
