"""ONNX export: onnxruntime matches PyTorch on unseen lengths, alone and batched, for both
backbone families and the PEFT methods; the metadata is there; what cannot export says why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from _models import build_tiny_model
from _tones import RATE, tone
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.config import ModelConfig
from peft_ser.export.onnx import ExportError, export_onnx
from peft_ser.inference.onnx_model import METADATA_FILE, MODEL_FILE, OnnxModel, OnnxModelError
from peft_ser.models.ser_model import SERModel, build_model

LENGTHS = (5_000, 11_111, 800, 16_000)
"""None of these is a length the export traced or checked with."""

CASES = [
    ("tiny-whisper", "combined", {}),  # LoRA merged + prompts + sequential adapters
    ("tiny-whisper", "adapter", {}),  # parallel adapters
    (
        "tiny-whisper",
        "peft",
        {
            "peft_config": {
                "peft_type": "IA3",
                "target_modules": ["fc1", "fc2"],
                "feedforward_modules": ["fc2"],
            }
        },
    ),
    ("tiny-whisper", "frozen", {}),
    ("tiny-wavlm", "combined", {}),  # relative position bias over prompts and clip
    ("tiny-wavlm", "combined", {"tune_layers": 1}),  # the bias recomputed where prompts start
    ("tiny-wav2vec2", "adapter", {}),
]
"""With `test_cli_exports...` (adapter_l on wav2vec2) every method's kind of graph: merged tuners
(LoRA, IA3), prompts, both adapters, and none (frozen; full trains the same graph)."""


def trained_model(backbone: str, method: str, **options: object) -> SERModel:
    """A tiny model whose trained weights are random and non-zero (zero-initialised adapters
    and LoRA B would hide whether their path survives the export)."""
    return build_tiny_model(backbone, method=method, jitter=0.1, **options)


def clips(lengths: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(1)
    waveforms = torch.zeros(len(lengths), max(lengths))
    for row, count in enumerate(lengths):
        wave = tone(count / RATE, 200 + 90 * row, noise=0.02, rng=rng)
        waveforms[row, :count] = torch.from_numpy(wave)
    return waveforms, torch.tensor(lengths)


@pytest.mark.parametrize(("backbone", "method", "options"), CASES, ids=lambda c: str(c)[:12])
def test_onnxruntime_matches_pytorch_alone_and_batched(
    tmp_path: Path, backbone: str, method: str, options: dict
) -> None:
    model = trained_model(backbone, method, **options)
    report = export_onnx(model, tmp_path)
    assert max(report.max_difference_alone, report.max_difference_batched) <= 1e-4
    exported = OnnxModel(tmp_path)
    waveforms, lengths = clips(LENGTHS)
    with torch.no_grad():
        alone = torch.cat(
            [model(waveforms[i : i + 1, :n], torch.tensor([n])) for i, n in enumerate(LENGTHS)]
        ).numpy()
    batched = exported.forward(waveforms.numpy(), lengths.numpy())
    assert np.abs(batched - alone).max() <= 1e-4
    for row, count in enumerate(LENGTHS):
        lone = exported.forward(waveforms[row, :count].numpy(), np.array([count]))
        assert np.abs(lone[0] - alone[row]).max() <= 1e-4
    assert alone.std(axis=0).max() > 1e-3  # the clips give different answers: a real check


def test_metadata_in_the_graph_and_beside_it(tmp_path: Path) -> None:
    model = trained_model("tiny-whisper", "lora")
    export_onnx(model, tmp_path)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / MODEL_FILE)).metadata_props}
    facts = json.loads((tmp_path / METADATA_FILE).read_text())
    assert json.loads(props["labels"]) == facts["labels"] == model.labels
    assert props["sample_rate"] == "16000" and facts["sample_rate"] == 16000
    assert props["backbone"] == facts["backbone"] == "tiny-whisper"
    assert props["method"] == facts["method"] == "lora"
    assert facts["max_samples"] == 480_000
    graph = onnx.load(str(tmp_path / MODEL_FILE)).graph
    assert [i.name for i in graph.input] == ["waveforms", "lengths"]
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
    assert dims == [["batch", "samples"], ["batch"]]
    assert not any("lora" in node.name for node in graph.node)  # merged into the base weights


def test_refuses_what_it_cannot_export(tmp_path: Path) -> None:
    half = trained_model("tiny-whisper", "lora").to(torch.bfloat16)
    with pytest.raises(ExportError, match="bfloat16: load it in float32"):
        export_onnx(half, tmp_path)
    padded = build_model(
        ModelConfig(backbone="tiny-whisper", method="lora", whisper_window="pad30")
    )
    with pytest.raises(ExportError, match="pad30"):
        export_onnx(padded, tmp_path)
    quantized = torch.ao.quantization.quantize_dynamic(
        trained_model("tiny-wav2vec2", "frozen"), {torch.nn.Linear}, dtype=torch.qint8
    )
    with pytest.raises(ExportError, match="torch-quantized"):
        export_onnx(quantized, tmp_path)
    assert not (tmp_path / MODEL_FILE).exists()


def test_cli_exports_and_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    trained_model("tiny-wav2vec2", "adapter_l").save(tmp_path / "model")
    result = CliRunner().invoke(
        app, ["export", str(tmp_path / "model"), "--format", "onnx", "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 0, result.output
    assert "largest logit difference" in result.output
    assert OnnxModel(tmp_path / "x").labels == ["Neutral", "Angry", "Sad", "Happy"]
    missing = CliRunner().invoke(app, ["export", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert missing.exit_code == 2
    assert missing.output.count("error:") == 1 and "nope" in missing.output
    with pytest.raises(OnnxModelError, match=r"model\.onnx is missing"):
        OnnxModel(tmp_path / "model")
