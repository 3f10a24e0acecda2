"""An exported ONNX model under onnxruntime, with the call contract of a loaded model.

`OnnxModel` has what the inference layer asks of a model: ``labels``, ``max_samples`` and
``forward(waveforms, lengths)`` returning logits. It needs numpy, onnx and onnxruntime only
(the ``onnx`` extra), no PyTorch: the whole model, front end included, is in the graph.
``precision="int8"`` runs a copy quantized by onnxruntime's dynamic quantization (the weights
of matrix products stored as int8, activations quantized per batch at run time).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from peft_ser.utils.errors import InvalidRequestError, UserError
from peft_ser.utils.precision import resolve_precision

MODEL_FILE = "model.onnx"
METADATA_FILE = "peft_ser_onnx.json"
FORMAT = "peft-ser-onnx"
INPUT_NAMES = ("waveforms", "lengths")
OUTPUT_NAME = "logits"
ONNX_PRECISIONS = ("fp32", "int8")


class OnnxModelError(UserError, ValueError):
    """An ONNX model folder that cannot be used; the message names the file and the problem."""


def is_onnx_model_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder written by ``peft-ser export --format onnx``."""
    return (Path(path) / MODEL_FILE).is_file()


def refuse_export_on_torch(path: str | os.PathLike[str]) -> None:
    """Refuse to read an exported folder as a PyTorch model: it holds a graph, no weights."""
    if is_onnx_model_dir(path):
        raise InvalidRequestError(
            f"{path}: an exported ONNX model; run it with backend onnxruntime"
        )


def onnx_precision(precision: str | None) -> str:
    """The precision (any spelling, None: fp32) if onnxruntime runs it; refused otherwise."""
    wanted = resolve_precision(precision)
    if wanted not in ONNX_PRECISIONS:
        raise InvalidRequestError(
            f"backend onnxruntime runs precision {' or '.join(ONNX_PRECISIONS)}; {wanted} is a "
            "torch precision"
        )
    return wanted


class OnnxModel:
    """``forward(waveforms[B, T], lengths[B])`` → logits ``[B, C]`` over ``labels``, in numpy."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        precision: str = "fp32",
        threads: int | None = None,
    ) -> None:
        self.precision = onnx_precision(precision)
        onnxruntime = _import_onnxruntime()
        self.directory = Path(directory)
        self.facts = _read_facts(self.directory)
        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        model = quantized_graph(self.directory) if precision == "int8" else self._model_path()
        self.session = onnxruntime.InferenceSession(
            model, options, providers=["CPUExecutionProvider"]
        )

    @property
    def labels(self) -> list[str]:
        return list(self.facts["labels"])

    @property
    def attributes(self) -> list[str]:
        """Attribute values after the class logits (models trained on attributes)."""
        return list(self.facts.get("attributes", []))

    @property
    def max_samples(self) -> int | None:
        """The longest clip the backbone encodes (Whisper's 30 s), or None without a limit."""
        limit = self.facts.get("max_samples")
        return None if limit is None else int(limit)

    def forward(self, waveforms: Any, lengths: Any = None) -> np.ndarray:
        """Logits for ``[B, T]`` (or one ``[T]``) 16 kHz float waveforms and lengths in samples.

        Arrays or CPU tensors alike; ``lengths`` defaults to the full width of every row.
        """
        samples = np.asarray(waveforms, dtype=np.float32)
        if samples.ndim == 1:
            samples = samples[None]
        if lengths is None:
            lengths = np.full(samples.shape[0], samples.shape[1])
        counts = np.asarray(lengths, dtype=np.int64).reshape(-1)
        if samples.ndim != 2 or counts.shape[0] != samples.shape[0]:
            raise ValueError(
                f"need waveforms [B, T] and lengths [B]; got {samples.shape} and {counts.shape}"
            )
        limit = self.max_samples
        if limit is not None and int(counts.max()) > limit:
            raise ValueError(
                f"this model encodes at most {limit / self.facts['sample_rate']:g} s per clip; "
                f"got {int(counts.max()) / self.facts['sample_rate']:.1f} s"
            )
        feeds = {INPUT_NAMES[0]: np.ascontiguousarray(samples), INPUT_NAMES[1]: counts}
        (logits,) = self.session.run([OUTPUT_NAME], feeds)
        return np.asarray(logits)

    __call__ = forward

    def _model_path(self) -> str:
        return str(self.directory / MODEL_FILE)


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise OnnxModelError(
            "backend onnxruntime needs the onnx extra: pip install 'peft-ser[onnx]'"
        ) from None
    return onnxruntime


def _read_facts(directory: Path) -> dict[str, Any]:
    """The JSON beside the graph: labels and preprocessing facts, checked for what is used."""
    if not directory.is_dir():
        raise OnnxModelError(f"{directory}: no such folder")
    if not (directory / MODEL_FILE).is_file():
        raise OnnxModelError(f"{directory}: not an exported ONNX model ({MODEL_FILE} is missing)")
    path = directory / METADATA_FILE
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OnnxModelError(
            f"{path}: file is missing (export writes it beside the model)"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise OnnxModelError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(facts, dict) or facts.get("format") != FORMAT:
        raise OnnxModelError(f"{path}: not a peft-ser ONNX description (no format {FORMAT!r})")
    for key in ("labels", "attributes"):
        names = facts.get(key, [])
        if not isinstance(names, list) or not all(isinstance(x, str) for x in names):
            raise OnnxModelError(f"{path}: {key!r} must be a list of names")
    if not facts.get("labels") and not facts.get("attributes"):
        raise OnnxModelError(f"{path}: names no 'labels' and no 'attributes' the model predicts")
    return facts


def quantized_graph(directory: Path) -> bytes:
    """The graph with its matrix-product weights quantized to int8 by onnxruntime."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="peft-ser-int8-") as scratch:
        target = Path(scratch) / "model.int8.onnx"
        quantize_dynamic(directory / MODEL_FILE, target, weight_type=QuantType.QInt8)
        return target.read_bytes()
