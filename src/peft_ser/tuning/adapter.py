"""Bottleneck adapters: ``adapter`` (parallel) and ``adapter_l`` (sequential).

Both use the same bottleneck: down-projection (Kaiming-initialised), ReLU, dropout 0.1,
up-projection (zero-initialised, so training starts from the pre-trained function) and a fixed
output scale of 0.1.

* ``adapter`` reads the residual stream right after self-attention and adds its output to the
  layer's feed-forward contribution, i.e. it runs beside the feed-forward block.
* ``adapter_l`` reads the feed-forward block's output and adds its output to it.

The adapters are attached with forward hooks on the backbone's own modules, so the pre-trained
layers run unchanged and the adapter weights live at ``<layer>.adapter``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..backbones import Backbone
from ..config import ModelConfig
from .registry import register


class Bottleneck(nn.Module):
    def __init__(self, width: int, bottleneck: int, dropout: float = 0.1, scale: float = 0.1):
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)
        self.dropout = nn.Dropout(dropout)
        self.scale = scale
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.up(self.dropout(torch.relu(self.down(hidden)))) * self.scale


def add_sequential_adapters(backbone: Backbone, bottleneck: int) -> None:
    """``ffn_out ← ffn_out + adapter(ffn_out)`` in every layer."""
    for layer in backbone.layers:
        layer.adapter = Bottleneck(backbone.hidden_size, bottleneck)

        def add_adapter(_: nn.Module, __: Any, output: torch.Tensor, adapter=layer.adapter):
            return output + adapter(output)

        backbone.ffn_output(layer).register_forward_hook(add_adapter)


def add_parallel_adapters(backbone: Backbone, bottleneck: int) -> None:
    """``ffn_out ← ffn_out + adapter(residual after attention)`` in every layer."""
    for layer in backbone.layers:
        layer.adapter = Bottleneck(backbone.hidden_size, bottleneck)
        seen: dict[str, torch.Tensor] = {}

        def remember_input(_: nn.Module, inputs: tuple[torch.Tensor, ...], seen=seen) -> None:
            seen["residual"] = inputs[0]

        def add_adapter(
            _: nn.Module, __: Any, output: torch.Tensor, adapter=layer.adapter, seen=seen
        ) -> torch.Tensor:
            return output + adapter(seen.pop("residual"))

        backbone.post_attention(layer).register_forward_pre_hook(remember_input)
        backbone.ffn_output(layer).register_forward_hook(add_adapter)


@register("adapter")
def parallel_adapter(backbone: Backbone, config: ModelConfig) -> None:
    add_parallel_adapters(backbone, config.adapter_dim)


@register("adapter_l")
def sequential_adapter(backbone: Backbone, config: ModelConfig) -> None:
    add_sequential_adapters(backbone, config.adapter_dim)
