"""``combined``: embedding prompts, LoRA and sequential adapters together, as in the paper."""

from __future__ import annotations

from ..backbones import Backbone
from ..config import ModelConfig
from .adapter import add_sequential_adapters
from .lora import inject, lora_config
from .prompt import add_prompts
from .registry import register


@register("combined")
def combined(backbone: Backbone, config: ModelConfig) -> None:
    inject(backbone, lora_config(backbone, config))
    add_prompts(backbone, config.prompt_length)
    add_sequential_adapters(backbone, config.adapter_dim)
