"""The downstream head of the paper: a learnable mix of all hidden states, pointwise convolutions,
mean pooling over the utterance's own frames, and a two-layer classifier (or regressor: an output
per attribute, see `peft_ser.models.tasks`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from peft_ser.models.backbones.base import frame_mask


class PointwiseConv(nn.Conv1d):
    """The paper's kernel-1 ``Conv1d`` (and its ``[out, in, 1]`` weights, so checkpoints of the
    original code load unchanged), applied to channels-last ``[B, F, C]`` frames as a matrix
    product: the same numbers without the two transposes, and on CPUs a faster backward pass
    (oneDNN's kernel-1 convolution backward ran several times slower than a matrix product,
    by 3x more in bfloat16; see docs/benchmarks.md)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return F.linear(frames, self.weight.squeeze(-1), self.bias)


class SERHead(nn.Module):
    """``[L+1, B, F, D]`` hidden states + valid frame counts → ``[B, outputs]`` (class logits,
    attribute values, or both side by side)."""

    def __init__(self, num_states: int, width: int, num_outputs: int, hidden: int = 256) -> None:
        super().__init__()
        # Zeros give uniform softmax weights over the states at the start of training.
        self.layer_weights = nn.Parameter(torch.zeros(num_states))
        self.convs = nn.Sequential(
            PointwiseConv(width, hidden),
            nn.ReLU(),
            nn.Dropout(0.1),
            PointwiseConv(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(0.1),
            PointwiseConv(hidden, hidden),
        )
        self.classifier = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_outputs)
        )

    def forward(self, hidden_states: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.layer_weights, dim=0).to(hidden_states.dtype)
        mixed = torch.einsum("l,lbfd->bfd", weights, hidden_states)
        features = self.convs(mixed)
        valid = frame_mask(frame_lengths, features.shape[1]).unsqueeze(-1).to(features.dtype)
        pooled = (features * valid).sum(dim=1) / frame_lengths.clamp(min=1).unsqueeze(1)
        return self.classifier(pooled.to(features.dtype))
