"""Export a trained model to ONNX: one graph from waveforms and lengths to logits.

The graph is traced from a copy of the model, so the model itself is left as it was:

* LoRA and the other ``peft`` tuners are merged into the base weights (peft's own ``merge``)
  and their wrappers removed, so the graph holds plain linear layers;
* adapters and embedding prompts stay graph nodes (they are not linear in the base weights);
* Whisper's log-mel front end computes its STFT as a convolution with the windowed DFT basis,
  the same arithmetic as ``torch.stft`` in operators every ONNX runtime has.

Inputs are ``waveforms[B, T]`` float32 at 16 kHz and ``lengths[B]`` int64 (samples), with the
batch and time axes dynamic; the output is ``logits[B, C]``. Every mask the model computes from
``lengths`` (frames, padding, per-clip statistics) is traced as operators on that input, never
folded into constants of the example, and `export_onnx` checks exactly that: it compares
onnxruntime with PyTorch on clips of lengths the example did not have, alone and batched.
The labels and preprocessing facts go into the ONNX metadata and a JSON file beside the model.
"""

from __future__ import annotations

import copy
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from peft_ser.data.audio import SAMPLE_RATE
from peft_ser.inference.onnx_model import (
    FORMAT,
    INPUT_NAMES,
    METADATA_FILE,
    MODEL_FILE,
    OUTPUT_NAME,
    OnnxModel,
)
from peft_ser.models.backbones.whisper import HOP_LENGTH, N_FFT, LogMel, WhisperBackbone
from peft_ser.models.ser_model import SERModel
from peft_ser.models.tuning.merge import MergeError, merge_tuners
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import output_folder, write_atomic_with

OPSET = 17
"""ONNX opset of the exported graph (onnxruntime 1.14 and later run it)."""
TOLERANCE = 1e-4
"""Largest difference in logits between onnxruntime and PyTorch that `export_onnx` accepts."""
EXAMPLE_SAMPLES = (12_000, 7_361)
"""Lengths of the traced example batch: unequal, so padding and masks are live while tracing."""
CHECK_SAMPLES = (16_000, 4_000, 9_013, 23_456)
"""Lengths compared after export: none is an example length, and they are batched together."""


class ExportError(UserError, ValueError):
    """A model that cannot be exported as asked; the message says why."""


@dataclass(frozen=True)
class ExportReport:
    """Where the export went and how closely onnxruntime matched PyTorch on the check clips."""

    directory: Path
    max_difference_alone: float
    max_difference_batched: float
    check_samples: tuple[int, ...]


def export_onnx(
    model: SERModel,
    directory: str | os.PathLike[str],
    *,
    tolerance: float = TOLERANCE,
) -> ExportReport:
    """Write ``model.onnx`` and ``peft_ser_onnx.json`` into ``directory`` and verify them.

    Raises `ExportError` naming the reason for a model that cannot be exported (weights not
    float32, a quantized model, a tuner peft cannot merge), and when onnxruntime's logits on the
    check clips differ from PyTorch's by more than ``tolerance`` (nothing is left behind then).
    """
    _check_exportable(model)
    if not math.isfinite(tolerance) or tolerance <= 0:
        raise ExportError(f"tolerance {tolerance}: give a positive finite logit difference")
    directory = output_folder(directory, "--out")
    directory.mkdir(parents=True, exist_ok=True)
    graph = exportable_copy(model)
    path = directory / MODEL_FILE
    write_atomic_with(path, lambda target: _trace_to_onnx(graph, Path(target)))
    facts = metadata(model)
    _add_metadata(path, facts)
    text = json.dumps(facts, indent=2) + "\n"
    write_atomic_with(directory / METADATA_FILE, lambda target: Path(target).write_text(text))
    try:
        return _verify(model, directory, tolerance)
    except ExportError:
        path.unlink(missing_ok=True)
        (directory / METADATA_FILE).unlink(missing_ok=True)
        raise


def metadata(model: SERModel) -> dict[str, Any]:
    """What a runtime needs besides the graph: label names and how the input is prepared."""
    config = model.config
    return {
        "format": FORMAT,
        "format_version": 1,
        "labels": model.labels[: model.layout.logits_width],
        "attributes": list(config.attributes) if model.layout.values_width else [],
        "sample_rate": SAMPLE_RATE,
        "channels": 1,
        "input": (
            "waveforms [B, T] float32 mono samples in [-1, 1], zero-padded to the longest clip; "
            "lengths [B] int64 samples; log-mel or waveform normalisation happen in the graph"
        ),
        "backbone": config.backbone,
        "family": model.backbone.family,
        "method": config.method,
        "max_samples": getattr(model.backbone, "max_samples", None),
        "opset": OPSET,
    }


def exportable_copy(model: SERModel) -> SERModel:
    """A copy of ``model`` in eval mode with tuners merged and an export-ready front end."""
    graph = copy.deepcopy(model).eval()
    try:
        merge_tuners(graph)
    except MergeError as error:
        raise ExportError(f"cannot export: {error}") from None
    backbone = graph.backbone
    if isinstance(backbone, WhisperBackbone):
        backbone.log_mel = DFTLogMel(backbone.log_mel)
    return graph


class DFTLogMel(LogMel):
    """`LogMel` with its STFT as a strided convolution by the Hann-windowed DFT basis.

    ``torch.stft`` with complex output has no ONNX form; the real and imaginary parts of every
    frame's DFT are the same sums written as one ``Conv`` over the samples.
    """

    def __init__(self, log_mel: LogMel) -> None:
        nn.Module.__init__(self)
        self.filters = log_mel.filters
        self.window = log_mel.window
        bins = torch.arange(1 + N_FFT // 2, dtype=torch.float64)[:, None]
        angles = 2 * math.pi * bins * torch.arange(N_FFT, dtype=torch.float64) / N_FFT
        window = log_mel.window.double()
        basis = torch.cat([torch.cos(angles) * window, -torch.sin(angles) * window])
        self.basis = basis.float().unsqueeze(1)

    def power_spectrum(self, frames_source: torch.Tensor) -> torch.Tensor:
        parts = F.conv1d(frames_source.unsqueeze(1), self.basis, stride=HOP_LENGTH)
        real, imaginary = parts.chunk(2, dim=1)
        return real.pow(2) + imaginary.pow(2)


def _check_exportable(model: SERModel) -> None:
    """Refuse, naming why, what the float32 graph could not represent faithfully."""
    if not isinstance(model, SERModel):
        raise ExportError(f"cannot export {type(model).__name__}: give a peft-ser SERModel")
    dtypes = {parameter.dtype for parameter in model.parameters()}
    if dtypes != {torch.float32}:
        names = ", ".join(sorted(str(dtype).removeprefix("torch.") for dtype in dtypes))
        raise ExportError(
            f"cannot export a model whose weights are {names}: load it in float32 "
            "(export writes a float32 graph; quantize it to int8 with --precision int8)"
        )
    quantized = [
        name for name, module in model.named_modules() if "quantized" in type(module).__module__
    ]
    if quantized:
        raise ExportError(
            f"cannot export a torch-quantized model (layer {quantized[0]}): export the float32 "
            "model and quantize the ONNX file instead (--precision int8)"
        )
    if any(parameter.device.type != "cpu" for parameter in model.parameters()):
        raise ExportError("cannot export a model on a GPU: move it to the CPU (model.cpu())")
    if getattr(model.backbone, "window", "crop") == "pad30":
        raise ExportError(
            "cannot export whisper_window 'pad30': its fixed 30-s window pads every clip "
            "in Python; export a model trained with whisper_window 'crop'"
        )


def _trace_to_onnx(graph: SERModel, path: Path) -> None:
    """TorchScript-based export (``dynamo=False``): traces the masks as operators on lengths."""
    waveforms, lengths = _example_batch(EXAMPLE_SAMPLES)
    dynamic = {
        "waveforms": {0: "batch", 1: "samples"},
        "lengths": {0: "batch"},
        OUTPUT_NAME: {0: "batch"},
    }
    with warnings.catch_warnings(), torch.no_grad():
        # Tracing warns about the Python-side length check, which only guards against clips
        # over Whisper's 30-s limit; the runtime repeats that check before every forward.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            _Logits(graph),
            (waveforms, lengths),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )


class _Logits(nn.Module):
    """The model's forward with exactly the graph's two inputs, for the tracer."""

    def __init__(self, model: SERModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model(waveforms, lengths)


def _add_metadata(path: Path, facts: dict[str, Any]) -> None:
    """Store the facts as ONNX ``metadata_props`` (string values; lists and numbers as JSON)."""
    import onnx

    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    for key, value in facts.items():
        entry = proto.metadata_props.add()
        entry.key = key
        entry.value = value if isinstance(value, str) else json.dumps(value)
    write_atomic_with(path, lambda target: onnx.save(proto, target))


def _example_batch(samples: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded speech-like clips (a gliding tone plus noise) of these lengths."""
    generator = np.random.default_rng(0)
    lengths = torch.tensor(samples, dtype=torch.int64)
    waveforms = torch.zeros(len(samples), max(samples))
    for row, count in enumerate(samples):
        t = np.arange(count) / SAMPLE_RATE
        clip = 0.2 * np.sin(2 * np.pi * (150 + 40 * row) * t * (1 + 0.05 * np.sin(3 * t)))
        clip += 0.01 * generator.standard_normal(count)
        waveforms[row, :count] = torch.from_numpy(clip.astype(np.float32))
    return waveforms, lengths


def _verify(model: SERModel, directory: Path, tolerance: float) -> ExportReport:
    """onnxruntime against PyTorch on unseen lengths, each clip alone and all batched."""
    session = OnnxModel(directory)
    waveforms, lengths = _example_batch(CHECK_SAMPLES)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            expected = model(waveforms, lengths)
    finally:
        model.train(was_training)
    reference = expected.double().numpy()
    batched = session.forward(waveforms.numpy(), lengths.numpy())
    alone = np.concatenate(
        [
            session.forward(waveforms[row : row + 1, :count].numpy(), np.array([count]))
            for row, count in enumerate(CHECK_SAMPLES)
        ]
    )
    report = ExportReport(
        directory,
        float(np.abs(alone - reference).max()),
        float(np.abs(batched - reference).max()),
        CHECK_SAMPLES,
    )
    worst = max(report.max_difference_alone, report.max_difference_batched)
    if not worst <= tolerance:
        raise ExportError(
            f"{directory / MODEL_FILE}: onnxruntime's logits differ from PyTorch's by "
            f"{worst:.2e} (> {tolerance:g}) on clips of {list(CHECK_SAMPLES)} samples; not kept"
        )
    return report
