"""SERModel: a pre-trained speech encoder, made trainable by a PEFT method, feeding the head.

Only the small trained part is ever saved: ``save(dir)`` writes the trainable weights as
safetensors and the ``ModelConfig`` as JSON; ``load(dir)`` rebuilds the backbone from its source,
applies the same PEFT method and loads them back.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .backbones import Backbone, build_backbone
from .config import ModelConfig
from .fileio import write_atomic_with
from .head import SERHead
from .tuning import apply_method

if TYPE_CHECKING:
    from .inference import Prediction

CONFIG_FILE = "peft_ser_config.json"
WEIGHTS_FILE = "trainable.safetensors"


class SERModel(nn.Module):
    """``model(waveforms[B, T], lengths[B])`` → logits ``[B, C]`` over ``model.labels``."""

    def __init__(self, config: ModelConfig, backbone: Backbone) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.head = SERHead(
            backbone.num_layers + 1, backbone.hidden_size, len(config.labels), config.head_dim
        )

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    def encode(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All hidden states ``[L+1, B, F, D]`` and valid frames per clip (16 kHz input)."""
        if lengths is None:
            lengths = torch.full((waveforms.shape[0],), waveforms.shape[1], dtype=torch.long)
        output = self.backbone(waveforms, lengths.to(waveforms.device))
        return output.hidden_states, output.frame_lengths

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if waveforms.dim() == 1:
            waveforms = waveforms.unsqueeze(0)
        return self.head(*self.encode(waveforms, lengths))

    def predict(self, inputs: Any, **options: Any) -> list[Prediction]:
        """Labels and probabilities for files or ``(samples, rate)`` pairs; see ``inference``."""
        from .inference import predict

        return predict(inputs, model=self, **options)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a PEFT run changes: the method's parameters and the head."""
        return {
            name: parameter.detach()
            for name, parameter in self.named_parameters()
            if parameter.requires_grad
        }

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        expected = set(self.trainable_state_dict())
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise ValueError(
                "trained weights do not match this model: "
                f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
            )
        self.load_state_dict(state, strict=False)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the trained weights and the config; the pre-trained backbone is not copied."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = {k: v.contiguous().cpu() for k, v in self.trainable_state_dict().items()}
        write_atomic_with(directory / WEIGHTS_FILE, lambda path: save_file(weights, path))
        config_text = self.config.model_dump_json(indent=2)
        write_atomic_with(directory / CONFIG_FILE, lambda path: Path(path).write_text(config_text))
        return directory

    @classmethod
    def load(
        cls, directory: str | os.PathLike[str], map_location: str | torch.device = "cpu"
    ) -> SERModel:
        """Rebuild from ``save``'s output, in eval mode."""
        directory = Path(directory)
        config_path = directory / CONFIG_FILE
        if not config_path.is_file():
            raise FileNotFoundError(f"{config_path}: no peft-ser model config here")
        config = ModelConfig.model_validate(json.loads(config_path.read_text()))
        model = build_model(config)
        model.load_trainable_state_dict(load_file(directory / WEIGHTS_FILE, device="cpu"))
        return model.to(map_location).eval()


def build_model(config: ModelConfig, pretrained: bool = True) -> SERModel:
    """Backbone from its source, PEFT method applied, fresh head."""
    backbone = build_backbone(config.backbone, config.whisper_window, pretrained=pretrained)
    apply_method(backbone, config)
    return SERModel(config, backbone)


@dataclass(frozen=True)
class ParameterCount:
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total


def count_parameters(config: ModelConfig) -> ParameterCount:
    """Trainable and total parameters from the configs alone: no weights, no network.

    The model is built on PyTorch's meta device, so even the largest backbone costs no memory.
    """
    with torch.device("meta"):
        model = build_model(config, pretrained=False)
    return parameter_count(model)


def parameter_count(model: nn.Module) -> ParameterCount:
    parameters = list(model.parameters())
    return ParameterCount(
        sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)
    )
