"""Property tests of the training sampler (`LengthBucketSampler`): for any lengths, labels,
batch size, pool, jitter and slack, an epoch holds every item exactly once in batches of the
batch size (the last may be short), repeats from ``(seed, epoch)``, deals each global batch out
whole across processes and micro-batches, and, with ``slack``, keeps every label within twice
its allowance of its share of each batch; `data.bucket_slack` reaches a run's training sampler,
and a bad value is one `ConfigError`."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peft_ser.config import ConfigError, load_run_config
from peft_ser.data.sampler import LengthBucketSampler, padding_waste
from peft_ser.training.batches import BatchSource


@st.composite
def samplers(draw: st.DrawFn, one_pool: bool = False) -> LengthBucketSampler:
    """A training sampler over drawn lengths (often tied: clips cut to a crop) and labels
    (often following the length, as in acted speech), at a drawn epoch."""
    count = draw(st.integers(0, 120))
    classes = draw(st.integers(1, 6))
    labels = draw(st.lists(st.integers(0, classes - 1), min_size=count, max_size=count))
    spread = draw(st.sampled_from([0, 3, 1000]))
    noise = draw(st.lists(st.integers(0, spread), min_size=count, max_size=count))
    follows = draw(st.booleans())
    crop = draw(st.sampled_from([None, 300, 2000]))
    lengths = [
        1 + n + (800 * label if follows else 0) for n, label in zip(noise, labels, strict=True)
    ]
    if crop is not None:
        lengths = [min(length, crop) for length in lengths]
    batch_size = draw(st.integers(1, 40))
    pool = math.ceil(max(count, 1) / batch_size) if one_pool else draw(st.integers(1, 6))
    sampler = LengthBucketSampler(
        lengths,
        batch_size,
        shuffle=True,
        labels=draw(st.sampled_from([labels, None])) if not one_pool else labels,
        bucketing=draw(st.booleans()) if not one_pool else True,
        pool=pool,
        jitter=draw(st.sampled_from([0.0, 0.25, 1.0, 5.0])),
        slack=draw(st.sampled_from([None, 0.0, 0.5, 2.0, 1e9]))
        if not one_pool
        else draw(st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0])),
        seed=draw(st.integers(0, 2**32 - 1)),
        accumulate=draw(st.integers(1, 4)),
    )
    sampler.set_epoch(draw(st.integers(0, 1000)))
    return sampler


@settings(max_examples=200, deadline=None)
@given(samplers())
def test_an_epoch_holds_every_item_once_in_batches_of_the_batch_size(
    sampler: LengthBucketSampler,
) -> None:
    batches = sampler.global_batches()
    count = sampler.lengths.shape[0]
    assert sorted(i for batch in batches for i in batch) == list(range(count))
    assert len(batches) == math.ceil(count / sampler.batch_size) == len(sampler.step_sizes())
    sizes = sorted(len(batch) for batch in batches)
    assert all(size == sampler.batch_size for size in sizes[1:])
    assert not sizes or 1 <= sizes[0] <= sampler.batch_size


@settings(max_examples=100, deadline=None)
@given(samplers())
def test_an_epoch_repeats_from_its_seed_and_epoch(sampler: LengthBucketSampler) -> None:
    again = LengthBucketSampler(
        sampler.lengths.tolist(),
        sampler.batch_size,
        shuffle=True,
        labels=None if sampler.labels is None else sampler.labels.tolist(),
        bucketing=sampler.bucketing,
        pool=sampler.pool,
        jitter=sampler.jitter,
        slack=sampler.slack,
        seed=sampler.seed,
        accumulate=sampler.accumulate,
    )
    epoch = sampler.epoch
    again.set_epoch(epoch + 1)
    again.global_batches()  # another epoch in between changes nothing
    again.set_epoch(epoch)
    assert again.global_batches() == sampler.global_batches()
    assert list(again) == list(sampler)


@settings(max_examples=100, deadline=None)
@given(samplers(), st.integers(1, 4))
def test_processes_and_micro_batches_deal_out_each_global_batch_whole(
    sampler: LengthBucketSampler, processes: int
) -> None:
    """Each global batch arrives as its step's micro-batches, each split across the
    processes (a micro-batch smaller than the process count is topped up with repeats)."""
    parts = []
    for rank in range(processes):
        sampler.num_replicas, sampler.rank = processes, rank
        parts.append(list(sampler))
    assert len({len(part) for part in parts}) == 1  # every process runs the same steps
    steps = iter(zip(*parts, strict=True))
    for batch, size in zip(sampler.global_batches(), sampler.step_sizes(), strict=True):
        micro = [next(steps) for _ in range(size)]
        assert all(part for step in micro for part in step)
        assert {item for step in micro for part in step for item in part} == set(batch)
        if processes == 1:
            assert [item for step in micro for item in step[0]] == batch
    assert next(steps, None) is None


@settings(max_examples=200, deadline=None)
@given(samplers(one_pool=True))
def test_with_slack_every_batch_holds_each_label_within_twice_its_allowance(
    sampler: LengthBucketSampler,
) -> None:
    """One pool (the epoch): a label of share ``s`` has an allowance of ``max(1, slack · s ·
    batch_size)`` clips, and each batch of ``m`` clips holds ``s·m`` of it within twice that."""
    assert sampler.labels is not None and sampler.slack is not None
    labels = sampler.labels
    for label in np.unique(labels):
        share = float(np.mean(labels == label))
        allowance = max(1.0, sampler.slack * share * sampler.batch_size)
        for batch in sampler.global_batches():
            held = int(np.sum(labels[batch] == label))
            assert abs(held - share * len(batch)) <= 2 * allowance + 1e-9


def test_slack_lets_batches_follow_length_where_length_does_not_follow_the_label() -> None:
    """IEMOCAP-like lengths cut to a 6-s crop, 256 clips, labels unrelated to length: with
    slack, padding comes near that of sorting by length alone, well below the stratified
    buckets', and batches stay as mixed in labels as random ones."""
    rng = np.random.default_rng(0)
    seconds = np.minimum(np.clip(rng.lognormal(np.log(3.4), 0.65, 256), 0.6, 20.0), 6.0)
    lengths = np.round(seconds * 16000).astype(int).tolist()
    labels = rng.integers(0, 4, size=256)

    def sampler(**options: object) -> LengthBucketSampler:
        return LengthBucketSampler(lengths, 32, shuffle=True, labels=labels, seed=1, **options)  # type: ignore[arg-type]

    def top_share(batches: list[list[int]]) -> float:
        return float(np.mean([np.bincount(labels[b]).max() / len(b) for b in batches]))

    slack = sampler(jitter=0.5, slack=0.5).global_batches()
    stratified = sampler(jitter=0.5).global_batches()
    random = sampler(bucketing=False).global_batches()
    assert padding_waste(slack, lengths) < 0.15 < padding_waste(stratified, lengths)
    assert padding_waste(random, lengths) > 0.35
    assert top_share(slack) <= top_share(random) + 0.02


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "half", [0.5]])
def test_a_bad_slack_is_one_config_error_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"data\.bucket_slack") as caught:
        load_run_config(overrides={"data.corpus": "x", "data.bucket_slack": value})
    assert "\n" not in str(caught.value)


def test_slack_of_zero_and_a_huge_slack_are_valid_settings() -> None:
    """0 keeps each label within one clip of its share of every prefix; a huge slack lets
    batches follow length alone."""
    for value in ("0", "1e9", None):
        config = load_run_config(overrides={"data.corpus": "x", "data.bucket_slack": value})
        assert config.data.bucket_slack == (None if value is None else float(value))


@settings(max_examples=60, deadline=None)
@given(samplers())
def test_without_labels_or_with_a_huge_slack_the_layout_is_by_length(
    sampler: LengthBucketSampler,
) -> None:
    """One label (or none given) leaves nothing to keep in proportion: the slack layout is the
    stratified one; and a slack too large to bind sorts each pool by jittered length alone."""
    sampler.bucketing, sampler.accumulate = True, 1
    sampler.slack, sampler.labels = 0.5, None
    laid_out = sampler.global_batches()
    sampler.slack = None
    assert sampler.global_batches() == laid_out
    sampler.labels = np.arange(sampler.lengths.shape[0]) % 3
    sampler.slack = 1e9
    unbound = sampler.global_batches()
    sampler.labels = None
    assert sampler.global_batches() == unbound


class _Split:
    """The two things `BatchSource.sampler` reads of a dataset: lengths and labels."""

    def __init__(self, lengths: list[int], labels: list[int]) -> None:
        self._lengths, self._labels = lengths, labels

    def __len__(self) -> int:
        return len(self._lengths)

    def lengths(self) -> list[int]:
        return self._lengths

    def label_of(self, index: int) -> int:
        return self._labels[index]


def test_a_run_batches_training_clips_with_the_configured_slack() -> None:
    """`data.bucket_slack` reaches the training sampler; evaluation stays sorted by length."""
    rng = np.random.default_rng(2)
    split = _Split(rng.integers(1000, 9000, 300).tolist(), rng.integers(0, 4, 300).tolist())
    config = load_run_config(
        overrides={"data.corpus": "x", "data.bucketing": True, "data.bucket_slack": 0.5}
    )
    accelerator = cast(Any, SimpleNamespace(num_processes=1, process_index=0))
    source = BatchSource(config, accelerator, {"train": cast(Any, split)}, None, lambda *_: None)
    sampler, lengths = source.sampler("train", 32, shuffle=True, epoch=3)
    assert sampler.slack == 0.5 and lengths == split.lengths()
    expected = LengthBucketSampler(
        lengths,
        32,
        shuffle=True,
        labels=split._labels,
        jitter=config.data.bucket_jitter,
        slack=0.5,
        seed=config.seed,
    )
    expected.set_epoch(3)
    assert sampler.global_batches() == expected.global_batches()
    evaluation, _ = source.sampler("train", 32, shuffle=False, epoch=0)
    assert [i for b in evaluation.global_batches() for i in b] == np.argsort(
        lengths, kind="stable"
    ).tolist()
