"""No PEFT: the backbone stays frozen (``frozen``, alias ``finetune`` as in the paper) or trains
entirely (``full``)."""

from __future__ import annotations

from ..backbones import Backbone
from ..config import ModelConfig
from .registry import register


@register("frozen", "finetune")
def frozen(backbone: Backbone, config: ModelConfig) -> None:
    """Only the head trains; the backbone is a fixed feature extractor."""


@register("full")
def full(backbone: Backbone, config: ModelConfig) -> None:
    """Every backbone weight trains (the upper bound PEFT methods are compared with)."""
    backbone.requires_grad_(True)
