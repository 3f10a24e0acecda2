"""``combined``: embedding prompts, LoRA and sequential adapters together, as in the paper; its
options are those of the three."""

from __future__ import annotations

from typing import TYPE_CHECKING

from peft_ser.models.tuning.adapter import AdapterOptions
from peft_ser.models.tuning.lora import LoraOptions, inject, lora_config
from peft_ser.models.tuning.prompt import PromptOptions, add_prompts
from peft_ser.models.tuning.spec import MethodSpec

if TYPE_CHECKING:
    from peft_ser.models.backbones import Backbone


class CombinedOptions(AdapterOptions, PromptOptions, LoraOptions):
    """LoRA's options, then ``prompt_length``, then ``adapter_dim``."""


def combined(backbone: Backbone, options: CombinedOptions) -> None:
    from peft_ser.models.tuning.bottleneck import add_sequential_adapters

    inject(backbone, lora_config(backbone, options))
    add_prompts(backbone, options.prompt_length)
    add_sequential_adapters(backbone, options.adapter_dim)


COMBINED = MethodSpec(("combined",), CombinedOptions, combined)
