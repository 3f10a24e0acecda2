"""Augmentation settings: the random gain, speed and noise a training clip may get."""

from __future__ import annotations

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
