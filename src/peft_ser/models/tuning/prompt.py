"""Embedding prompts: ``P`` learnable vectors prepended to every encoder layer's input.

The backbone's layer loop prepends them, marks them valid in the attention mask (so every frame can
attend to them), and drops them from the layer's output; WavLM's relative position bias is computed
over the longer sequence. Prompts are Xavier-initialised as in the paper.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from peft_ser.models.backbones import Backbone
from peft_ser.models.tuning.registry import register

if TYPE_CHECKING:
    from peft_ser.models.config import ModelConfig


def add_prompts(backbone: Backbone, length: int) -> None:
    prompts = nn.ParameterList()
    for _ in range(backbone.num_layers):
        prompt = torch.empty(length, backbone.hidden_size)
        nn.init.xavier_uniform_(prompt)
        prompts.append(nn.Parameter(prompt))
    backbone.prompts = prompts


@register("embedding_prompt")
def embedding_prompt(backbone: Backbone, config: ModelConfig) -> None:
    add_prompts(backbone, config.prompt_length)
