"""How a model runs at inference: a backend (PyTorch or onnxruntime) at a precision.

The inference layer asks one thing of a model: ``labels`` (its classes), ``attributes`` (the
names of the attribute values it predicts after the class logits, empty for a categorical
model), ``max_samples`` (the longest clip it encodes, or None) and
``forward(waveforms[B, T], lengths[B])`` returning numpy outputs ``[B, C + A]``, left for the
caller to check for non-finite values. `torch_model.TorchModel` gives that for a `SERModel` at
``fp32``, ``bf16`` (autocast) or ``int8`` (dynamic quantization of a merged copy);
`onnx_model.OnnxModel` gives it for an exported ONNX folder under onnxruntime, at fp32 or int8.

`inference_model` wraps a loaded model for its backend at a precision, or makes one from a
source: an exported folder is opened by onnxruntime, anything else is loaded by `load_model`.
`choose_backend` checks every option against the source before anything loads. An exported
folder on onnxruntime never imports torch: this module, `onnx_model` and `loading` import it
only inside the functions that need it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from peft_ser.inference.loading import load_model, resolve_device
from peft_ser.inference.onnx_model import (
    OnnxModel,
    is_onnx_model_dir,
    onnx_precision,
    refuse_export_on_torch,
)
from peft_ser.utils.errors import InvalidRequestError, suggest
from peft_ser.utils.precision import check_float32_weights, dtype_word, resolve_precision

if TYPE_CHECKING:
    import numpy as np
    import torch

    from peft_ser.models.ser_model import SERModel

BACKENDS = ("torch", "onnxruntime")


class InferenceModel(Protocol):
    """What the inference layer calls: see the module's docstring."""

    @property
    def labels(self) -> list[str]: ...

    @property
    def attributes(self) -> list[str]: ...

    @property
    def max_samples(self) -> int | None: ...

    def forward(self, waveforms: Any, lengths: Any) -> np.ndarray: ...


def resolve_backend(backend: str | None) -> str | None:
    """``torch`` or ``onnxruntime`` (any case; ``onnx``/``ort`` for the latter), None for auto."""
    if backend is None:
        return None
    name = {"onnx": "onnxruntime", "ort": "onnxruntime"}.get(backend.lower(), backend.lower())
    if name not in BACKENDS:
        raise InvalidRequestError(
            f"unknown backend {backend!r}{suggest(name, BACKENDS)}; give one of "
            f"{', '.join(BACKENDS)}"
        )
    return name


def inference_model(
    model: SERModel | InferenceModel | str | os.PathLike[str],
    *,
    backend: str | None = None,
    precision: str | None = None,
    device: str | torch.device | None = None,
    threads: int | None = None,
    cache_folder: str | os.PathLike[str] | None = None,
    backbone: str | os.PathLike[str] | None = None,
    dtype: str | torch.dtype | None = None,
) -> InferenceModel:
    """The model to predict with, at ``precision`` (any spelling of fp32, bf16, int8).

    A `SERModel` runs on PyTorch (int8 quantizes a copy on every call: to predict many times,
    make the `TorchModel` once); an `OnnxModel` or `TorchModel` is used as it is (its precision
    was fixed when it was made, so a different one is refused). A source is checked by
    `choose_backend`, then a folder written by ``peft-ser export`` is opened by onnxruntime
    (``threads``: its intra-op threads) and any other is loaded by `load_model` (with
    ``device``, ``cache_folder``, ``backbone`` and ``dtype``). ``backend`` None picks by what
    ``model`` is; a backend that does not fit it is refused.
    """
    chosen = resolve_backend(backend)
    if isinstance(model, (str, os.PathLike)):
        chosen = choose_backend(model, chosen, precision, device=device, dtype=dtype)
        if chosen == "onnxruntime":
            return OnnxModel(model, precision=resolve_precision(precision), threads=threads)
        loaded = load_model(
            model, device, cache_folder=cache_folder, backbone=backbone, dtype=dtype
        )
        return _on_torch(loaded, resolve_precision(precision))
    if _is_ser_model(model):
        _require_backend(chosen, "torch", "a PyTorch model (SERModel)")
        return _on_torch(model, resolve_precision(precision))
    if not all(hasattr(model, name) for name in ("labels", "attributes", "max_samples", "forward")):
        raise InvalidRequestError(
            f"model is {type(model).__name__}; give a loaded model (load_model), a saved "
            "model folder or a zoo name"
        )
    kind = "onnxruntime" if isinstance(model, OnnxModel) else "torch"
    _require_backend(chosen, kind, f"a {type(model).__name__}")
    found = getattr(model, "precision", "fp32")
    if precision is not None and resolve_precision(precision) != found:
        raise InvalidRequestError(
            f"this {type(model).__name__} runs at {found}; load it again with precision "
            f"{resolve_precision(precision)}"
        )
    return model  # type: ignore[return-value]


def choose_backend(
    name_or_path: str | os.PathLike[str],
    backend: str | None,
    precision: str | None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> str:
    """The backend ``name_or_path`` runs on, with every option checked without loading.

    ``backend`` None picks onnxruntime for a folder written by ``peft-ser export`` and torch
    for anything else. Raises `InvalidRequestError` for an option no backend knows, or a
    combination that cannot run: an export on torch, a non-export on onnxruntime, onnxruntime
    with bf16, a GPU or another dtype, a reduced precision on weights cast to another dtype.
    Only the torch backend's device check imports torch.
    """
    chosen = resolve_backend(backend)
    wanted = resolve_precision(precision)
    weights = dtype_word(dtype)
    onnx_dir = is_onnx_model_dir(name_or_path)
    if chosen is None:
        chosen = "onnxruntime" if onnx_dir else "torch"
    if chosen == "torch":
        refuse_export_on_torch(name_or_path)
        resolve_device(device)
        check_float32_weights(wanted, weights)
        return chosen
    if not onnx_dir:
        raise InvalidRequestError(
            f"{name_or_path}: backend onnxruntime needs a folder written by peft-ser export "
            f"(no {Path(name_or_path) / 'model.onnx'}); export it first: peft-ser export "
            f"{name_or_path} --format onnx --out DIR"
        )
    if device is not None and str(device) != "cpu" and resolve_device(device).type != "cpu":
        raise InvalidRequestError("backend onnxruntime runs on the CPU; leave out --device")
    onnx_precision(wanted)
    if weights != "fp32":
        raise InvalidRequestError("backend onnxruntime runs the exported float32 graph")
    return chosen


def _is_ser_model(model: object) -> TypeGuard[SERModel]:
    """Whether ``model`` is a `SERModel`, asked without importing torch: none can exist
    unless its module was imported."""
    if "peft_ser.models.ser_model" not in sys.modules:
        return False
    from peft_ser.models.ser_model import SERModel

    return isinstance(model, SERModel)


def _on_torch(model: SERModel, precision: str) -> InferenceModel:
    from peft_ser.inference.torch_model import TorchModel

    return TorchModel(model, precision)


def _require_backend(chosen: str | None, actual: str, what: str) -> None:
    if chosen is not None and chosen != actual:
        raise InvalidRequestError(f"backend {chosen} cannot run {what}; it runs on {actual}")
