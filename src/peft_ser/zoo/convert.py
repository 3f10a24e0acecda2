"""Conversion of the original PEFT-SER checkpoint layout into this package's weight names.

The authors' model classes saved a head (``model_seq.*``, ``out_layer.*``, ``layer_weights``
or ``weights``) and loralib matrices under ``backbone_model.encoder.layers.N``. This module
reads such files without unpickling code and renames their keys (see ``docs/zoo.md``).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from peft_ser.zoo.table import ZooError

if TYPE_CHECKING:  # torch is imported where weights are read, so the name table loads fast
    import torch

_HEAD_RULES = (
    (re.compile(r"^model_seq\.([036])\.(weight|bias)$"), r"head.convs.\1.\2"),
    (re.compile(r"^out_layer\.([02])\.(weight|bias)$"), r"head.classifier.\1.\2"),
)
_LAYER_WEIGHT_KEYS = ("layer_weights", "weights")
_WHISPER_LORA = (
    re.compile(r"^encoder\.layers\.(\d+)\.(fc1|fc2)\.lora_([AB])$"),
    r"backbone.model.layers.\1.\2.lora_\3.default.weight",
)
_SSL_LORA = (
    re.compile(
        r"^encoder\.layers\.(\d+)\.feed_forward\.(intermediate_dense|output_dense)\.lora_([AB])$"
    ),
    r"backbone.model.encoder.layers.\1.feed_forward.\2.lora_\3.default.weight",
)
_LORA_RULES = {
    "whisper": _WHISPER_LORA,
    "ssl": _SSL_LORA,
    "wav2vec2": _SSL_LORA,
    "wavlm": _SSL_LORA,
    "hubert": _SSL_LORA,
}
# Keys the original classes saved that play no part in their forward pass: Whisper's frozen copy
# of the positional table, and a layer norm the MMS class built but never applied.
_UNUSED = {"embed_positions", "layer_norm.weight", "layer_norm.bias"}
# How far below every other layer logit the input embeddings are put for a head that never
# mixed them: exp(-1e4) is exactly 0 in every float dtype, and the value stays finite.
_EXCLUDED_LOGIT_MARGIN = 1e4
_WHERE_L_COMES_FROM = (
    "convert the head together with its LoRA file, convert_original_checkpoint(head | lora, "
    "family), which takes L from the LoRA weights, or pass num_layers=L"
)


def load_original_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A released ``.pt`` state dict, read with ``weights_only=True`` (never unpickles code)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ZooError(f"{path}: refused, not a plain tensor state dict ({error})") from error
    except (OSError, RuntimeError, EOFError) as error:
        raise ZooError(
            f"{path}: not a readable PyTorch file, truncated or corrupt ({error})"
        ) from error
    if not isinstance(state, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise ZooError(f"{path}: expected a state dict of tensors, found {type(state).__name__}")
    return dict(state)


def _strip_prefixes(key: str) -> str:
    """Drop DataParallel's ``module.`` and the original wrappers' ``backbone_model.``."""
    while key.startswith("module."):
        key = key.removeprefix("module.")
    return key.removeprefix("backbone_model.")


def _rename(key: str, lora_rule: tuple[re.Pattern[str], str]) -> str | None:
    for pattern, replacement in (*_HEAD_RULES, lora_rule):
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return None


def _encoder_layers(converted: Mapping[str, torch.Tensor], num_layers: int | None) -> int | None:
    """L from the caller, checked against the LoRA layer indices; else inferred from them."""
    indices = {
        int(match.group(1))
        for key in converted
        if (match := re.search(r"\.layers\.(\d+)\.", key)) and key.startswith("backbone.")
    }
    if num_layers is not None and indices and max(indices) >= num_layers:
        raise ZooError(
            f"LoRA weights for layer {max(indices)}, but num_layers={num_layers}: the checkpoint "
            f"was trained on a backbone of at least {max(indices) + 1} layers. Leave num_layers "
            "out, convert_original_checkpoint(state, family) takes L from the LoRA weights, and "
            "load the weights on the backbone they were trained on (load_model(..., "
            "backbone=DIR), peft-ser predict --backbone DIR)"
        )
    if num_layers is None and indices:
        return max(indices) + 1
    return num_layers


def _layer_weights(weights: torch.Tensor, num_layers: int | None) -> torch.Tensor:
    """The layer-mixing logits over L+1 hidden states (input embeddings first).

    The released ``conv_output`` models mix all L+1 states, so their logits pass unchanged. The
    authors' earlier models had L logits over the transformer layers only; an embedding logit
    far below the others gives the embeddings softmax weight exactly 0 and the other L the
    weights of the original softmax over L (to float rounding: the sum gains an exact 0, though
    its order may change). It is finite, so it passes the checks every loaded weight does.
    """
    count = len(weights) if weights.ndim == 1 else None
    if num_layers is None:
        raise ZooError(
            f"cannot tell whether the {count} layer weights include the input embeddings "
            f"without the encoder's layer count L: {_WHERE_L_COMES_FROM}"
        )
    if count not in (num_layers, num_layers + 1):
        raise ZooError(
            f"layer weights of shape {tuple(weights.shape)} fit neither L={num_layers} nor "
            f"L+1={num_layers + 1} hidden states: the head was trained on a backbone of "
            f"another depth; {_WHERE_L_COMES_FROM} of that backbone"
        )
    if count == num_layers + 1:
        return weights
    import torch

    excluded = float(weights.min()) - _EXCLUDED_LOGIT_MARGIN
    return torch.cat([weights.new_full((1,), excluded), weights])


def convert_original_checkpoint(
    state: Mapping[str, torch.Tensor], backbone_family: str, num_layers: int | None = None
) -> dict[str, torch.Tensor]:
    """Rename an original PEFT-SER state dict (head and/or LoRA) into this package's names.

    ``backbone_family`` is ``whisper`` or a wav2vec2-family model type (``wav2vec2``, ``wavlm``,
    ``hubert``; ``ssl`` too). The encoder's layer count L, which says whether the layer weights
    include the input embeddings (L+1 of them) or not (L), is taken from the LoRA keys in
    ``state``; ``num_layers`` gives it for a head converted alone. Any depth works. Keys that
    match no known layout raise ``ZooError`` listing them, so a checkpoint is never half-loaded
    silently.
    """
    if backbone_family not in _LORA_RULES:
        raise ZooError(f"unknown backbone family {backbone_family!r}; known: {sorted(_LORA_RULES)}")
    converted: dict[str, torch.Tensor] = {}
    layer_weights: list[torch.Tensor] = []
    unknown: list[str] = []
    for original_key, value in state.items():
        key = _strip_prefixes(original_key)
        if key in _LAYER_WEIGHT_KEYS:
            layer_weights.append(value)
        elif (renamed := _rename(key, _LORA_RULES[backbone_family])) is not None:
            converted[renamed] = value
        elif key not in _UNUSED:
            unknown.append(original_key)
    if unknown:
        raise ZooError(f"keys of no known PEFT-SER layout ({backbone_family}): {sorted(unknown)}")
    if len(layer_weights) > 1:
        raise ZooError(f"both of {_LAYER_WEIGHT_KEYS} are present; expected one")
    if layer_weights:
        layers = _encoder_layers(converted, num_layers)
        converted["head.layer_weights"] = _layer_weights(layer_weights[0], layers)
    return converted
