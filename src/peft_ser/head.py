"""The downstream head of the paper: a learnable mix of all hidden states, pointwise convolutions,
mean pooling over the utterance's own frames, and a two-layer classifier (or regressor: an output
per attribute, see `peft_ser.tasks`)."""

from __future__ import annotations

import torch
from torch import nn

from .backbones.base import frame_mask


class SERHead(nn.Module):
    """``[L+1, B, F, D]`` hidden states + valid frame counts → ``[B, outputs]`` (class logits,
    attribute values, or both side by side)."""

    def __init__(self, num_states: int, width: int, num_outputs: int, hidden: int = 256) -> None:
        super().__init__()
        # Zeros give uniform softmax weights over the states at the start of training.
        self.layer_weights = nn.Parameter(torch.zeros(num_states))
        self.convs = nn.Sequential(
            nn.Conv1d(width, hidden, 1),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv1d(hidden, hidden, 1),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv1d(hidden, hidden, 1),
        )
        self.classifier = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_outputs)
        )

    def forward(self, hidden_states: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.layer_weights, dim=0).to(hidden_states.dtype)
        mixed = torch.einsum("l,lbfd->bfd", weights, hidden_states)
        features = self.convs(mixed.transpose(1, 2)).transpose(1, 2)
        valid = frame_mask(frame_lengths, features.shape[1]).unsqueeze(-1).to(features.dtype)
        pooled = (features * valid).sum(dim=1) / frame_lengths.clamp(min=1).unsqueeze(1)
        return self.classifier(pooled.to(features.dtype))
