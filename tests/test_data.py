"""Augmentation, collation and length-bucketed batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from peft_ser.config import AugmentConfig
from peft_ser.data import (
    Example,
    FeatureCache,
    LengthBucketSampler,
    add_gaussian_noise,
    augment,
    collate,
    padding_waste,
    stack_states,
    time_mask,
)


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
    assert padding_waste(bucketed.global_batches(), lengths) < 0.05
    assert padding_waste(plain.global_batches(), lengths) > 0.3


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
    assert ("u1", 16000) not in cache
    cache.bind("b")
    assert len(cache) == 0
