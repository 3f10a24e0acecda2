"""The bottleneck adapters of ``adapter`` and ``adapter_l`` (`peft_ser.models.tuning.adapter`),
kept apart from the method module because they need torch.

The bottleneck: down-projection (Kaiming-initialised), ReLU, dropout 0.1, up-projection
(zero-initialised, so training starts from the pre-trained function) and a fixed output scale
of 0.1. The adapters are attached with forward hooks on the backbone's own modules, so the
pre-trained layers run unchanged and the adapter weights live at ``<layer>.adapter``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from peft_ser.models.backbones import Backbone


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


class _AddOwnOutput:
    """Forward hook ``output + adapter(output)``.

    Hooks are objects holding their adapter rather than closures: ``copy.deepcopy`` of the
    model (export, int8 quantization) then gives the copy's hooks the copy's adapters.
    """

    def __init__(self, adapter: Bottleneck) -> None:
        self.adapter = adapter

    def __call__(self, _: nn.Module, __: Any, output: torch.Tensor) -> torch.Tensor:
        return output + self.adapter(output)


class _RememberInput:
    """Forward pre-hook that keeps the module's input for `_AddAdapterOf`."""

    def __init__(self, seen: dict[str, torch.Tensor]) -> None:
        self.seen = seen

    def __call__(self, _: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.seen["residual"] = inputs[0]


class _AddAdapterOf:
    """Forward hook ``output + adapter(remembered input)``."""

    def __init__(self, adapter: Bottleneck, seen: dict[str, torch.Tensor]) -> None:
        self.adapter = adapter
        self.seen = seen

    def __call__(self, _: nn.Module, __: Any, output: torch.Tensor) -> torch.Tensor:
        return output + self.adapter(self.seen.pop("residual"))


def add_sequential_adapters(backbone: Backbone, bottleneck: int) -> None:
    """``ffn_out ← ffn_out + adapter(ffn_out)`` in every tuned layer."""
    for layer in _tuned(backbone):
        layer.adapter = Bottleneck(backbone.hidden_size, bottleneck)
        backbone.ffn_output(layer).register_forward_hook(_AddOwnOutput(layer.adapter))


def add_parallel_adapters(backbone: Backbone, bottleneck: int) -> None:
    """``ffn_out ← ffn_out + adapter(residual after attention)`` in every tuned layer."""
    for layer in _tuned(backbone):
        layer.adapter = Bottleneck(backbone.hidden_size, bottleneck)
        seen: dict[str, torch.Tensor] = {}
        backbone.post_attention(layer).register_forward_pre_hook(_RememberInput(seen))
        backbone.ffn_output(layer).register_forward_hook(_AddAdapterOf(layer.adapter, seen))


def _tuned(backbone: Backbone) -> list[Any]:
    """The layers a method adapts (every layer, or the top ``model.tune_layers``)."""
    return [backbone.layers[index] for index in backbone.tuned_layers]
