"""Self-supervised encoders with a convolutional front end: wav2vec 2.0, HuBERT, WavLM (and MMS).

Two things make batching exact here:

* Base models (wav2vec2-base, HuBERT Base, WavLM Base/Base+) normalise the first convolution's
  output over time with a group norm (one group per channel). Over a zero-padded batch the
  statistics would include the padding. We run that first convolution batched and compute the
  normalisation from each clip's own valid frames, so a clip gives the same features alone or
  batched, without a per-utterance loop.
* Padded frames are zeroed before the positional convolution and hidden from attention as keys;
  WavLM's relative position bias is computed from the same lengths as the hidden states.

Layer drop and SpecAugment-style masking belong to pre-training and are never applied: the layer
loop is ours and every layer feeds the weighted layer sum, and ``embed`` runs the feature
encoder without transformers' ``_mask_hidden_states``. What remains of train mode is dropout
(feature projection, encoder input, attention and feed-forward), which ``model.tune_layers``
turns off below the tuned layers (`peft_ser.models.backbones.base`).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from transformers import (
    HubertConfig,
    HubertModel,
    PretrainedConfig,
    PreTrainedModel,
    Wav2Vec2Config,
    Wav2Vec2Model,
    WavLMConfig,
    WavLMModel,
)

from peft_ser.models.backbones.base import Backbone, additive_key_mask, frame_mask

# WavLM's attention passes a boolean padding mask beside its float position bias; PyTorch warns
# about the mixed types on every call although the result is right.
warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask and attn_mask")

MODEL_CLASSES: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "wav2vec2": (Wav2Vec2Config, Wav2Vec2Model),
    "hubert": (HubertConfig, HubertModel),
    "wavlm": (WavLMConfig, WavLMModel),
}


def attention_implementation(model_type: str) -> str:
    """SDPA where transformers offers it; WavLM's gated relative bias needs its own attention."""
    return "eager" if model_type == "wavlm" else "sdpa"


def conv_output_length(lengths: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Frames a valid (unpadded) 1-D convolution yields for inputs of these lengths."""
    return torch.div(lengths - kernel, stride, rounding_mode="floor") + 1


def masked_moments(
    values: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and (biased) variance over each item's first ``lengths`` steps of the last axis.

    ``values`` is ``[B, T]`` or ``[B, C, T]``; the results keep a size-1 time axis.
    """
    valid = frame_mask(lengths, values.shape[-1]).to(values.dtype)
    if values.dim() == 3:
        valid = valid.unsqueeze(1)
    count = lengths.to(values.dtype).clamp(min=1).reshape(-1, *[1] * (values.dim() - 1))
    mean = (values * valid).sum(dim=-1, keepdim=True) / count
    variance = (((values - mean) * valid) ** 2).sum(dim=-1, keepdim=True) / count
    return mean, variance


def masked_group_norm(
    features: torch.Tensor, lengths: torch.Tensor, norm: nn.GroupNorm
) -> torch.Tensor:
    """Per-channel group norm over each clip's valid frames only (``[B, C, F]``)."""
    if norm.num_groups != norm.num_channels:
        raise ValueError("front-end group norm must have one group per channel")
    mean, variance = masked_moments(features, lengths)
    normed = (features - mean) * torch.rsqrt(variance + norm.eps)
    return normed * norm.weight[None, :, None] + norm.bias[None, :, None]


def normalize_waveforms(waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance over each clip's samples, as the checkpoints' processors do."""
    mean, variance = masked_moments(waveforms, lengths)
    valid = frame_mask(lengths, waveforms.shape[-1]).to(waveforms.dtype)
    return (waveforms - mean) * torch.rsqrt(variance + 1e-7) * valid


class SSLBackbone(Backbone):
    """wav2vec 2.0-style encoder: conv feature encoder, projection, positional conv, layers."""

    family = "ssl"
    lora_targets = ("feed_forward.intermediate_dense", "feed_forward.output_dense")

    def __init__(self, model: Any, normalize: bool = False) -> None:
        config = model.config
        config.layerdrop = 0.0
        super().__init__(model, model.encoder.layers, config.hidden_size)
        self.normalize = normalize
        self.stable_layer_norm = bool(config.do_stable_layer_norm)
        self.relative_position_bias = isinstance(model, WavLMModel)

    @classmethod
    def from_config(cls, config: PretrainedConfig, normalize: bool = False) -> SSLBackbone:
        _, model_class = MODEL_CLASSES[config.model_type]
        config._attn_implementation = attention_implementation(config.model_type)
        return cls(model_class(config), normalize)

    @classmethod
    def from_pretrained(cls, source: str, model_type: str, normalize: bool) -> SSLBackbone:
        _, model_class = MODEL_CLASSES[model_type]
        attention = attention_implementation(model_type)
        return cls(model_class.from_pretrained(source, attn_implementation=attention), normalize)

    def embed(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.normalize:
            waveforms = normalize_waveforms(waveforms, lengths)
        features, frame_lengths = self._conv_features(waveforms, lengths)
        projected = self.model.feature_projection(features.transpose(1, 2))
        hidden = projected[0] if isinstance(projected, tuple) else projected
        hidden = hidden * frame_mask(frame_lengths, hidden.shape[1]).unsqueeze(-1)
        encoder = self.model.encoder
        hidden = hidden + encoder.pos_conv_embed(hidden)
        if not self.stable_layer_norm:
            hidden = encoder.layer_norm(hidden)
        return encoder.dropout(hidden), frame_lengths

    def frame_counts(self, lengths: torch.Tensor) -> torch.Tensor:
        return self._conv_lengths(lengths)[-1]

    def _conv_lengths(self, lengths: torch.Tensor) -> list[torch.Tensor]:
        """Each clip's valid length after each convolution of the feature encoder."""
        found: list[torch.Tensor] = []
        for conv_layer in self.model.feature_extractor.conv_layers:
            kernel, stride = conv_layer.conv.kernel_size[0], conv_layer.conv.stride[0]
            lengths = conv_output_length(lengths, kernel, stride)
            found.append(lengths)
        return found

    def _conv_features(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The convolutional feature encoder with the group norm computed per clip."""
        conv_layers = self.model.feature_extractor.conv_layers
        hidden = waveforms[:, None, :].to(conv_layers[0].conv.weight)
        valid_lengths = self._conv_lengths(lengths)
        for conv_layer, valid in zip(conv_layers, valid_lengths, strict=True):
            hidden = conv_layer.conv(hidden)
            norm = getattr(conv_layer, "layer_norm", None)
            if isinstance(norm, nn.GroupNorm):
                hidden = masked_group_norm(hidden, valid, norm)
            elif norm is not None:
                hidden = norm(hidden.transpose(-2, -1)).transpose(-2, -1)
            hidden = conv_layer.activation(hidden)
        return hidden, valid_lengths[-1]

    def run_layer(
        self, index: int, hidden: torch.Tensor, valid: torch.Tensor, carry: Any
    ) -> tuple[torch.Tensor, Any]:
        layer = self.layers[index]
        if self.relative_position_bias:
            if index > 0 and (carry is None or carry.shape[-1] != hidden.shape[1]):
                carry = self._position_bias(hidden)
            return layer(hidden, attention_mask=valid.long(), position_bias=carry, index=index)
        return layer(hidden, attention_mask=additive_key_mask(valid, hidden.dtype)), carry

    def _position_bias(self, hidden: torch.Tensor) -> torch.Tensor:
        """WavLM's relative position bias for ``hidden``'s length, as its first layer computes
        it and passes on: for a run that starts above the first layer (`from_states`), or a
        layer whose prompts make its sequence longer than the one before."""
        attention = self.layers[0].attention
        batch, length = hidden.shape[:2]
        bias = attention.compute_bias(length, length).unsqueeze(0).repeat(batch, 1, 1, 1)
        return bias.view(batch * attention.num_heads, length, length)

    def finalize(self, last_hidden: torch.Tensor) -> torch.Tensor:
        if self.stable_layer_norm:
            return self.model.encoder.layer_norm(last_hidden)
        return last_hidden

    def ffn_output(self, layer: Any) -> nn.Module:
        return layer.feed_forward

    def post_attention(self, layer: Any) -> nn.Module:
        return layer.final_layer_norm if self.stable_layer_norm else layer.feed_forward


def ssl_config(model_type: str, **overrides: Any) -> PretrainedConfig:
    """A transformers config of this SSL family with the given architecture overrides."""
    config_class, _ = MODEL_CLASSES[model_type]
    return config_class(**overrides)
