"""Augmentation, collation and length-bucketed batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from peft_ser.config import AugmentConfig
from peft_ser.data.augment import add_gaussian_noise, augment, time_mask
from peft_ser.data.dataset import Example, collate
from peft_ser.data.sampler import LengthBucketSampler, padding_waste
from peft_ser.data.states import FeatureCache, stack_states


def test_noise_has_the_requested_snr() -> None:
    rng = np.random.default_rng(0)
    wave = np.sin(np.arange(160000) / 10).astype(np.float32)
    noisy = add_gaussian_noise(wave, 20.0, rng)
    snr = 10 * np.log10(np.mean(wave**2) / np.mean((noisy - wave) ** 2))
    assert snr == pytest.approx(20.0, abs=0.2)


def test_time_mask_zeroes_one_stretch_of_the_given_share() -> None:
    wave = np.ones(1000, dtype=np.float32)
    masked = time_mask(wave, 0.12, np.random.default_rng(1))
    zeros = np.flatnonzero(masked == 0)
    assert zeros.size == 120 and zeros[-1] - zeros[0] == 119
    assert wave.min() == 1.0  # the input is left alone


def test_augmentation_is_reproducible_from_its_seed() -> None:
    config = AugmentConfig(noise_p=1.0, time_mask_p=1.0)
    wave = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
    first = augment(wave, config, np.random.default_rng([3, 1, 7]))
    again = augment(wave, config, np.random.default_rng([3, 1, 7]))
    other_epoch = augment(wave, config, np.random.default_rng([3, 2, 7]))
    assert np.array_equal(first, again) and not np.array_equal(first, other_epoch)


def test_collate_pads_and_drops_failed_items() -> None:
    examples = [
        Example(0, 1, np.ones(3, dtype=np.float32)),
        Example(1, 2, None, "x.wav: corrupt"),
        Example(2, 0, np.ones(5, dtype=np.float32)),
    ]
    batch = collate(examples)
    assert batch.waveforms.shape == (2, 5)
    assert batch.lengths.tolist() == [3, 5] and batch.indices.tolist() == [0, 2]
    assert batch.waveforms[0, 3:].abs().sum() == 0
    assert batch.errors == [(1, "x.wav: corrupt")]


def test_bucketing_cuts_padding_and_covers_every_item_once() -> None:
    lengths = np.random.default_rng(0).integers(8000, 96000, size=500).tolist()
    bucketed = LengthBucketSampler(lengths, 16, shuffle=True, seed=1)
    plain = LengthBucketSampler(lengths, 16, shuffle=True, bucketing=False, seed=1)
    for sampler in (bucketed, plain):
        items = sorted(i for batch in sampler for i in batch)
        assert items == list(range(500))
    assert padding_waste(bucketed.global_batches(), lengths) < 0.07  # 0.054 with a 1-batch jitter
    assert padding_waste(plain.global_batches(), lengths) > 0.3


def _length_follows_label(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four labels whose clip lengths barely overlap (2-3 s, 3-4 s, ...), as in acted speech
    where sad is slow and angry fast, taken to the extreme."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=count)
    lengths = (16000 * (2 + labels + rng.uniform(0, 1, size=count))).astype(int)
    return labels, lengths


def _largest_label_share(batches: list[list[int]], labels: np.ndarray) -> float:
    """Mean over batches of the share held by the batch's most frequent label."""
    return float(np.mean([np.bincount(labels[b]).max() / len(b) for b in batches]))


@pytest.mark.parametrize("count", [100, 2000])
def test_length_sorted_batches_stay_mixed_in_labels(count: int) -> None:
    labels, lengths = _length_follows_label(count)
    stratified = LengthBucketSampler(lengths, 32, shuffle=True, labels=labels, seed=3)
    random = LengthBucketSampler(lengths, 32, shuffle=True, bucketing=False, seed=3)
    length_only = LengthBucketSampler(lengths, 32, shuffle=True, jitter=0, seed=3)  # the old one
    mixed = _largest_label_share(stratified.global_batches(), labels)
    # sorting by length alone makes batches (nearly) one label each where length follows label
    assert _largest_label_share(length_only.global_batches(), labels) > 0.65
    assert mixed <= _largest_label_share(random.global_batches(), labels) + 0.03
    assert mixed < 0.45
    assert sorted(i for b in stratified for i in b) == list(range(count))


def test_stratified_buckets_keep_the_padding_saving_when_length_is_unrelated_to_label() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(8000, 96000, size=2000)
    labels = rng.integers(0, 4, size=2000)
    stratified = LengthBucketSampler(lengths, 16, shuffle=True, labels=labels, seed=1)
    random = LengthBucketSampler(lengths, 16, shuffle=True, bucketing=False, seed=1)
    assert padding_waste(stratified.global_batches(), lengths) < 0.1
    assert padding_waste(random.global_batches(), lengths) > 0.3


def test_stratified_batches_change_from_epoch_to_epoch_in_a_single_pool() -> None:
    labels, lengths = _length_follows_label(96)
    sampler = LengthBucketSampler(lengths, 8, shuffle=True, labels=labels, seed=0)
    epochs = []
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        epochs.append({frozenset(b) for b in sampler.global_batches()})
    assert len(epochs[0] & epochs[1]) < len(epochs[0]) // 2


def test_epochs_differ_and_repeat_from_the_seed() -> None:
    sampler = LengthBucketSampler(list(range(100)), 8, shuffle=True, seed=0)
    sampler.set_epoch(1)
    first = list(sampler)
    sampler.set_epoch(2)
    assert list(sampler) != first
    sampler.set_epoch(1)
    assert list(sampler) == first


def test_processes_split_each_global_batch() -> None:
    lengths = list(range(10, 31))
    ranks = [
        LengthBucketSampler(lengths, 4, shuffle=True, seed=0, num_replicas=2, rank=r)
        for r in range(2)
    ]
    whole = LengthBucketSampler(lengths, 4, shuffle=True, seed=0).global_batches()
    for global_batch, part0, part1 in zip(whole, *ranks, strict=True):
        assert sorted(part0 + part1) == sorted(
            global_batch + global_batch[: max(0, 2 - len(global_batch))]
        )
        assert part0 and part1


def test_feature_cache_stacks_and_forgets_another_backbone() -> None:
    cache = FeatureCache()
    cache.bind("a")
    cache.put("u1", None, torch.ones(3, 4, 2))
    cache.put("u2", None, torch.ones(3, 6, 2))
    batch = stack_states([cache.get("u1", None), cache.get("u2", None)], [0, 1], [0, 1])
    assert batch.hidden.shape == (3, 2, 6, 2) and batch.hidden.dtype == torch.float32
    assert batch.frame_lengths.tolist() == [4, 6]
    assert bool((batch.hidden[:, 0, :4] == 1).all()) and bool((batch.hidden[:, 1] == 1).all())
    assert not batch.hidden[:, 0, 4:].any()  # the shorter clip's padding is zero
    assert ("u1", 16000) not in cache
    cache.bind("b")
    assert len(cache) == 0
