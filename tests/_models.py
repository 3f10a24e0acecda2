"""The seeded tiny SER model the tests build, save and predict with (random weights, no download).

Seeding torch before the build makes the same arguments give the same weights in every test and
every session, whatever ran before; `tests/conftest.py` serves the plain one as fixtures.
"""

from __future__ import annotations

import torch

from peft_ser.config import ModelConfig
from peft_ser.models.ser_model import SERModel, build_model


def build_tiny_model(
    backbone: str = "tiny-whisper",
    *,
    seed: int = 0,
    sharpen: float = 1.0,
    jitter: float = 0.0,
    lora_b: float = 0.0,
    **options: object,
) -> SERModel:
    """A tiny ``backbone`` + LoRA model (``options`` are `ModelConfig` keys, e.g. another
    ``method``) built after ``torch.manual_seed(seed)``, in eval mode.

    A fresh build's answers barely move with its input, and its tuners are zero-initialised
    (LoRA B, the adapters' up-projection), so tests that need more ask for it:

    - ``jitter``: add ``jitter`` × N(0, 1) to every trained weight, as training would move them
      (a zero tuner would hide whether its path survives an export or a reload);
    - ``lora_b``: draw LoRA B from N(0, ``lora_b``), so the adapter changes the answer;
    - ``sharpen``: scale the classifier's last layer, so probabilities move clearly with the
      input rather than all sitting near 1 / (number of labels).
    """
    options.setdefault("method", "lora")
    torch.manual_seed(seed)
    model = build_model(ModelConfig(backbone=backbone, **options))  # type: ignore[arg-type]
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if jitter and parameter.requires_grad:
                parameter.add_(jitter * torch.randn_like(parameter))
            if lora_b and "lora_B" in name:
                parameter.normal_(0.0, lora_b)
        if sharpen != 1.0:
            model.head.classifier[2].weight.mul_(sharpen)
    return model.eval()
