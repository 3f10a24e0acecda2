"""How a model runs at inference: a backend (PyTorch or onnxruntime) at a precision.

The inference layer asks one thing of a model: ``labels`` (its classes), ``attributes`` (the
names of the attribute values it predicts after the class logits, empty for a categorical
model), ``max_samples`` (the longest clip it encodes, or None) and
``forward(waveforms[B, T], lengths[B])`` returning numpy outputs ``[B, C + A]``.
`TorchModel` gives that for a `SERModel` in float32, under bfloat16 autocast
(``bf16``: matrix products in bf16, which pays on CPUs with AVX512-BF16 or AMX, see
`peft_ser.utils.precision`) or with its linear layers quantized to int8 (``int8``: PyTorch's
dynamic quantization, after merging LoRA into the base weights). `OnnxModel` gives it for an
exported ONNX folder under onnxruntime, in float32 or int8, without PyTorch.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from peft_ser.inference.loading import (
    InvalidRequestError,
    load_model,
    resolve_device,
    resolve_dtype,
)
from peft_ser.inference.onnx_model import OnnxModel, is_onnx_model_dir
from peft_ser.models.ser_model import SERModel
from peft_ser.models.tuning.merge import merge_tuners
from peft_ser.utils.errors import suggest
from peft_ser.utils.precision import bf16_autocast

BACKENDS = ("torch", "onnxruntime")
PRECISIONS = ("fp32", "bf16", "int8")
_PRECISION_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "qint8": "int8"}


class InferenceModel(Protocol):
    """What the inference layer calls: see the module's docstring."""

    @property
    def labels(self) -> list[str]: ...

    @property
    def attributes(self) -> list[str]: ...

    @property
    def max_samples(self) -> int | None: ...

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> np.ndarray: ...


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


def resolve_precision(precision: str | None) -> str:
    """``fp32``, ``bf16`` or ``int8`` (any case, or ``float32``/``bfloat16``); None is fp32."""
    if precision is None:
        return "fp32"
    name = _PRECISION_ALIASES.get(precision.lower(), precision.lower())
    if name not in PRECISIONS:
        raise InvalidRequestError(
            f"unknown precision {precision!r}{suggest(name, PRECISIONS)}; give one of "
            f"{', '.join(PRECISIONS)}"
        )
    return name


class TorchModel:
    """A `SERModel` run in eval mode without gradients, at a precision; logits as numpy."""

    def __init__(self, model: SERModel, precision: str = "fp32") -> None:
        self.precision = resolve_precision(precision)
        self.device = next(model.parameters()).device
        if self.precision != "fp32" and next(model.parameters()).dtype != torch.float32:
            raise InvalidRequestError(
                f"precision {self.precision} starts from a float32 model; this one is "
                f"{str(next(model.parameters()).dtype).removeprefix('torch.')} (use dtype "
                "float32 with a precision, or a dtype alone)"
            )
        if self.precision == "int8":
            model = quantize_int8(model)
        self.model = model

    @property
    def labels(self) -> list[str]:
        return self.model.labels[: self.model.layout.logits_width]

    @property
    def attributes(self) -> list[str]:
        return list(self.model.config.attributes) if self.model.layout.values_width else []

    @property
    def max_samples(self) -> int | None:
        return getattr(self.model.backbone, "max_samples", None)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> np.ndarray:
        model = self.model
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode(), bf16_autocast(self.device, self.precision == "bf16"):
                logits = model(waveforms.to(self.device), lengths.to(self.device))
        finally:
            model.train(was_training)
        return logits.float().cpu().numpy()

    __call__ = forward


def quantize_int8(model: SERModel) -> SERModel:
    """A copy with tuners merged and every linear layer dynamically quantized to int8 (CPU).

    Weights are stored as int8 with one scale per output row; activations are quantized per
    batch at run time, so no calibration data is needed.
    """
    if next(model.parameters()).device.type != "cpu":
        raise InvalidRequestError(
            "int8 dynamic quantization runs on the CPU; load the model with device cpu"
        )
    merged = copy.deepcopy(model).eval()
    merge_tuners(merged)
    return torch.ao.quantization.quantize_dynamic(merged, {nn.Linear}, dtype=torch.qint8)


def inference_model(
    model: SERModel | InferenceModel | str | os.PathLike[str],
    *,
    backend: str | None = None,
    precision: str | None = None,
    device: str | torch.device | None = None,
    **load_options: Any,
) -> InferenceModel:
    """The model to predict with: a loaded one at ``precision``, or one loaded from a folder.

    A `SERModel` runs on PyTorch at ``precision`` (int8 quantizes a copy on every call: to
    predict many times, make the `TorchModel` once); an `OnnxModel` or `TorchModel` is used as
    it is (its precision was fixed when it was made, so a different one is refused). A folder
    written by ``peft-ser export`` runs on onnxruntime, any other name is loaded by
    `load_model` (with ``load_options``: ``cache_folder``, ``backbone``, ``dtype``).
    ``backend`` None picks by what ``model`` is; a backend that does not fit it is refused.
    """
    chosen = resolve_backend(backend)
    if isinstance(model, (str, os.PathLike)):
        return load_inference_model(
            model, backend=chosen, precision=precision, device=device, **load_options
        )
    if isinstance(model, SERModel):
        _require_backend(chosen, "torch", "a PyTorch model (SERModel)")
        return TorchModel(model, resolve_precision(precision))
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
    return model


def load_inference_model(
    name_or_path: str | os.PathLike[str],
    *,
    backend: str | None = None,
    precision: str | None = None,
    device: str | torch.device | None = None,
    threads: int | None = None,
    **load_options: Any,
) -> InferenceModel:
    """A saved model folder, zoo name or exported ONNX folder, ready at ``precision``.

    ``backend`` None runs an ONNX folder on onnxruntime and anything else on PyTorch.
    onnxruntime runs on the CPU at fp32 or int8 (``threads``: its intra-op threads).
    """
    wanted = resolve_precision(precision)
    chosen = choose_backend(
        name_or_path, backend, wanted, device=device, dtype=load_options.get("dtype")
    )
    if chosen == "onnxruntime":
        return OnnxModel(name_or_path, precision=wanted, threads=threads)
    loaded = load_model(name_or_path, device, **load_options)
    return TorchModel(loaded, wanted)


def choose_backend(
    name_or_path: str | os.PathLike[str],
    backend: str | None,
    precision: str | None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
) -> str:
    """The backend ``name_or_path`` runs on, checked against the other options without loading.

    ``backend`` None picks onnxruntime for a folder written by ``peft-ser export`` and torch
    for anything else. Raises `InvalidRequestError` for a combination that cannot run: an
    export on torch, a non-export on onnxruntime, onnxruntime with bf16, a GPU or a dtype.
    """
    chosen = resolve_backend(backend)
    wanted = resolve_precision(precision)
    onnx_dir = is_onnx_model_dir(name_or_path)
    if chosen is None:
        chosen = "onnxruntime" if onnx_dir else "torch"
    if chosen == "torch":
        if onnx_dir:
            raise InvalidRequestError(
                f"{name_or_path}: an exported ONNX model; run it with backend onnxruntime"
            )
        return chosen
    if not onnx_dir:
        raise InvalidRequestError(
            f"{name_or_path}: backend onnxruntime needs a folder written by peft-ser export "
            f"(no {Path(name_or_path) / 'model.onnx'}); export it first: peft-ser export "
            f"{name_or_path} --format onnx --out DIR"
        )
    if device is not None and resolve_device(device).type != "cpu":
        raise InvalidRequestError("backend onnxruntime runs on the CPU; leave out --device")
    if wanted == "bf16":
        raise InvalidRequestError(
            "backend onnxruntime runs precision fp32 or int8; bf16 is a torch precision"
        )
    if resolve_dtype(dtype) != torch.float32:
        raise InvalidRequestError("backend onnxruntime runs the exported float32 graph")
    return chosen


def _require_backend(chosen: str | None, actual: str, what: str) -> None:
    if chosen is not None and chosen != actual:
        raise InvalidRequestError(f"backend {chosen} cannot run {what}; it runs on {actual}")
