"""A `SERModel` on PyTorch at a precision, with the call contract of `backends.InferenceModel`.

``fp32`` runs the model as it is; ``bf16`` runs it under bfloat16 autocast (matrix products in
bf16, which pays on CPUs with AVX512-BF16 or AMX, see `peft_ser.utils.precision`), sharing its
weights; ``int8`` runs a copy whose LoRA is merged into the base weights and whose linear layers
are quantized to int8 (PyTorch's dynamic quantization). The onnxruntime counterpart, without
PyTorch, is `onnx_model.OnnxModel`.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from peft_ser.models.inputs import nonfinite_outputs_reported_by_caller
from peft_ser.models.ser_model import SERModel
from peft_ser.models.tuning.merge import merge_tuners
from peft_ser.utils.errors import InvalidRequestError
from peft_ser.utils.precision import (
    bf16_autocast,
    check_float32_weights,
    precision_word,
    resolve_precision,
)


class TorchModel:
    """A `SERModel` run in eval mode without gradients, at a precision; logits as numpy."""

    def __init__(self, model: SERModel, precision: str = "fp32") -> None:
        self.precision = resolve_precision(precision)
        self.device = next(model.parameters()).device
        check_float32_weights(self.precision, precision_word(next(model.parameters()).dtype))
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

    def forward(self, waveforms: Any, lengths: Any) -> np.ndarray:
        """Outputs ``[B, C + A]`` for ``[B, T]`` waveforms and ``[B]`` lengths (arrays or
        tensors). Non-finite outputs are returned for the caller to report, as onnxruntime's
        are, without the warning a bare `SERModel` call gives."""
        model = self.model
        was_training = model.training
        model.eval()
        batch = torch.as_tensor(waveforms).to(self.device)
        counts = torch.as_tensor(lengths).to(self.device)
        try:
            with (
                torch.inference_mode(),
                bf16_autocast(self.device, self.precision == "bf16"),
                nonfinite_outputs_reported_by_caller(),
            ):
                logits = model(batch, counts)
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
