"""No PEFT: the backbone stays frozen (``frozen``, alias ``finetune`` as in the paper) or trains
entirely (``full``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from peft_ser.models.backbones import Backbone
from peft_ser.models.tuning.registry import register

if TYPE_CHECKING:
    from peft_ser.models.config import ModelConfig


@register("frozen", "finetune")
def frozen(backbone: Backbone, config: ModelConfig) -> None:
    """Only the head trains; the backbone is a fixed feature extractor."""


@register("full")
def full(backbone: Backbone, config: ModelConfig) -> None:
    """Every backbone weight trains (the upper bound PEFT methods are compared with)."""
    backbone.requires_grad_(True)
