"""Waveform augmentation of training clips: its settings (`AugmentConfig`) and the noise and
time mask it applies.

The functions draw only from the generator they are given; `UtteranceDataset` seeds it by
``(seed, epoch, item)``, so a clip's augmentation does not depend on workers or resumption.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, model_validator

from peft_ser.utils.settings import StrictModel


class AugmentConfig(StrictModel):
    """Training-only waveform augmentation (the paper used audiomentations' equivalents)."""

    enabled: bool = True
    noise_p: float = Field(0.5, ge=0, le=1, description="probability of additive Gaussian noise")
    snr_db: tuple[float, float] = Field((10.0, 30.0), description="SNR range of the noise (dB)")
    time_mask_p: float = Field(0.5, ge=0, le=1, description="probability of one time mask")
    time_mask_fraction: tuple[float, float] = Field(
        (0.10, 0.15), description="masked share of the clip, drawn uniformly from this range"
    )

    @model_validator(mode="after")
    def _ordered_ranges(self) -> AugmentConfig:
        if self.snr_db[0] > self.snr_db[1]:
            raise ValueError(f"snr_db: low {self.snr_db[0]} exceeds high {self.snr_db[1]}")
        low, high = self.time_mask_fraction
        if not 0 <= low <= high < 1:
            raise ValueError(f"time_mask_fraction: need 0 <= low <= high < 1, got {low}, {high}")
        return self


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
