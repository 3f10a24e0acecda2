"""``combined``: embedding prompts, LoRA and sequential adapters together, as in the paper."""

from __future__ import annotations

from typing import TYPE_CHECKING

from peft_ser.models.backbones import Backbone
from peft_ser.models.tuning.adapter import add_sequential_adapters
from peft_ser.models.tuning.lora import inject, lora_config
from peft_ser.models.tuning.prompt import add_prompts
from peft_ser.models.tuning.registry import register

if TYPE_CHECKING:
    from peft_ser.models.config import ModelConfig


@register("combined")
def combined(backbone: Backbone, config: ModelConfig) -> None:
    inject(backbone, lora_config(backbone, config))
    add_prompts(backbone, config.prompt_length)
    add_sequential_adapters(backbone, config.adapter_dim)
