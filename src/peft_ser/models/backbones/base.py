"""What every backbone family shares: the layer loop, learnable prompts and the output record.

A family subclass supplies three pieces: the front end (waveform to the first layer's input and the
number of valid frames), how one encoder layer runs with a validity mask, and the final touch on the
last hidden state. The loop that collects every layer's output, and the embedding prompts that some
PEFT methods prepend to each layer's input, live here once for all families.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class BackboneOutput:
    """All hidden states, input embeddings first: ``[L+1, B, F, D]``, and valid frames per item."""

    hidden_states: torch.Tensor
    frame_lengths: torch.Tensor


def frame_mask(frame_lengths: torch.Tensor, num_frames: int | torch.Tensor) -> torch.Tensor:
    """Boolean ``[B, F]`` mask, true on the frames that belong to the utterance."""
    # A 0-d tensor count keeps the size an operator of a traced graph (ONNX export).
    positions = torch.arange(num_frames, device=frame_lengths.device)  # type: ignore[arg-type]
    return positions.unsqueeze(0) < frame_lengths.unsqueeze(1)


def additive_key_mask(valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``[B, 1, 1, F]`` additive attention mask that hides padded keys from every query."""
    blocked = torch.zeros(valid.shape, dtype=dtype, device=valid.device)
    blocked = blocked.masked_fill(~valid, torch.finfo(dtype).min)
    return blocked[:, None, None, :]


class Backbone(nn.Module, ABC):
    """A frozen-by-default speech encoder that returns every layer's hidden states.

    Attributes a PEFT method relies on:
    ``model`` (the transformers module whose weights are pre-trained), ``layers`` (its encoder
    layers), ``hidden_size``, ``lora_targets`` (default LoRA module names: the two feed-forward
    projections), ``ffn_output(layer)`` (the module whose output is the feed-forward contribution)
    and ``post_attention(layer)`` (the module whose input is the residual stream after attention).
    """

    family: str = ""
    lora_targets: tuple[str, ...] = ()
    # transformers modules: their sub-modules are reached by attribute, which typing cannot follow.
    model: Any
    layers: Any

    def __init__(self, model: nn.Module, layers: nn.ModuleList, hidden_size: int) -> None:
        super().__init__()
        self.model = model
        self.layers = layers
        self.hidden_size = hidden_size
        self.prompts: nn.ParameterList | None = None

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @abstractmethod
    def embed(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Front end: ``[B, T]`` samples to the first layer's input ``[B, F, D]`` + frame counts."""

    @abstractmethod
    def run_layer(
        self, index: int, hidden: torch.Tensor, valid: torch.Tensor, carry: Any
    ) -> tuple[torch.Tensor, Any]:
        """One encoder layer, padded frames masked; ``carry`` passes state between layers."""

    def finalize(self, last_hidden: torch.Tensor) -> torch.Tensor:
        """The family's last touch on the final layer's output (e.g. a closing layer norm)."""
        return last_hidden

    @abstractmethod
    def ffn_output(self, layer: Any) -> nn.Module:
        """Module whose output is the layer's feed-forward contribution (before the residual)."""

    @abstractmethod
    def post_attention(self, layer: Any) -> nn.Module:
        """Module whose input is the residual stream right after self-attention."""

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> BackboneOutput:
        hidden, frame_lengths = self.embed(waveforms, lengths)
        valid = frame_mask(frame_lengths, hidden.shape[1])
        states = [hidden]
        carry: Any = None
        for index in range(self.num_layers):
            hidden, carry = self._run_prompted_layer(index, hidden, valid, carry)
            states.append(hidden)
        states[-1] = self.finalize(states[-1])
        return BackboneOutput(torch.stack(states), frame_lengths)

    def _run_prompted_layer(
        self, index: int, hidden: torch.Tensor, valid: torch.Tensor, carry: Any
    ) -> tuple[torch.Tensor, Any]:
        """Prepend this layer's prompts (always attended to), run it, and drop them again."""
        if self.prompts is None:
            return self.run_layer(index, hidden, valid, carry)
        prompt = self.prompts[index].to(hidden.dtype).expand(hidden.shape[0], -1, -1)
        n_prompt = prompt.shape[1]
        prompt_valid = torch.ones(valid.shape[0], n_prompt, dtype=torch.bool, device=valid.device)
        hidden, carry = self.run_layer(
            index,
            torch.cat([prompt, hidden], dim=1),
            torch.cat([prompt_valid, valid], dim=1),
            carry,
        )
        return hidden[:, n_prompt:], carry
