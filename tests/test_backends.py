"""Backends and precisions at inference: onnxruntime predicts what PyTorch does, bf16 stays
close to fp32, int8 quantizes every linear layer and mostly agrees, bad options fail in a line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from test_export_onnx import clips, trained_model
from typer.testing import CliRunner

import peft_ser
from peft_ser.cli import app
from peft_ser.export.onnx import export_onnx
from peft_ser.inference.backends import inference_model
from peft_ser.inference.loading import InvalidRequestError
from peft_ser.inference.onnx_model import OnnxModel, quantized_graph
from peft_ser.inference.torch_model import TorchModel

LENGTHS = (16_000, 9_000, 12_345, 4_000, 7_777, 14_000, 6_000, 10_500)
BF16_PROBABILITY_BOUND = 0.05
"""bf16 keeps 8 bits of mantissa: on these clips each probability stays within this of fp32."""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A saved tiny LoRA model and its ONNX export."""
    root = tmp_path_factory.mktemp("backends")
    model = trained_model("tiny-whisper", "lora")
    model.save(root / "model")
    export_onnx(model, root / "onnx")
    return root / "model", root / "onnx"


def probabilities(model: object, lengths: tuple[int, ...] = LENGTHS) -> np.ndarray:
    waveforms, counts = clips(lengths)
    logits = inference_model(model).forward(waveforms, counts)  # type: ignore[arg-type]
    return torch.softmax(torch.from_numpy(logits).double(), dim=-1).numpy()


def test_predict_with_onnxruntime_equals_torch(exported: tuple[Path, Path], tmp_path: Path) -> None:
    saved, onnx_dir = exported
    waveforms, _ = clips(LENGTHS[:3])
    inputs = [(waveforms[i, :n].numpy(), 16_000) for i, n in enumerate(LENGTHS[:3])]
    sf.write(tmp_path / "long.wav", np.tile(waveforms[0].numpy(), 3), 16_000)
    inputs.append(str(tmp_path / "long.wav"))  # type: ignore[arg-type]
    by_torch = peft_ser.predict(inputs, model=saved, backend="torch", batch_size=2, window=1.5)
    by_onnx = peft_ser.predict(
        inputs, model=onnx_dir, backend="onnxruntime", batch_size=2, window=1.5
    )
    assert [p.label for p in by_onnx] == [p.label for p in by_torch]
    for ours, theirs in zip(by_onnx, by_torch, strict=True):
        assert len(ours.windows) == len(theirs.windows)
        for label, value in theirs.probabilities.items():
            assert abs(ours.probabilities[label] - value) < 1e-5
    assert len(by_onnx[-1].windows) == 3


def test_bf16_stays_close_to_fp32(exported: tuple[Path, Path]) -> None:
    model = peft_ser.load_model(exported[0], "cpu")
    fp32 = probabilities(model)
    bf16 = probabilities(TorchModel(model, "bf16"))
    assert np.abs(bf16 - fp32).max() <= BF16_PROBABILITY_BOUND
    assert (bf16.argmax(1) == fp32.argmax(1)).mean() >= 0.75


def test_int8_quantizes_every_linear_layer_and_mostly_agrees(exported: tuple[Path, Path]) -> None:
    model = peft_ser.load_model(exported[0], "cpu")
    int8 = TorchModel(model, "int8")
    linear = [m for m in int8.model.modules() if type(m) is torch.nn.Linear]
    quantized = [
        m for m in int8.model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)
    ]
    assert not linear and len(quantized) >= 4 * 2 + 2  # fc1 and fc2 of each layer, classifier
    assert not any(isinstance(m, BaseTunerLayer) for m in int8.model.modules())  # merged
    assert any(isinstance(m, BaseTunerLayer) for m in model.modules())  # on a copy
    fp32 = probabilities(model)
    for candidate in (int8, OnnxModel(exported[1], precision="int8")):
        answer = probabilities(candidate)
        assert (answer.argmax(1) == fp32.argmax(1)).mean() >= 0.75
        assert np.abs(answer - fp32).max() <= 0.1


def test_onnx_int8_graph_is_quantized(exported: tuple[Path, Path]) -> None:
    import onnx

    graph = onnx.load_from_string(quantized_graph(exported[1])).graph
    ops = [node.op_type for node in graph.node]
    plain = [node.op_type for node in onnx.load(str(exported[1] / "model.onnx")).graph.node]
    assert "MatMulInteger" in ops and "DynamicQuantizeLinear" in ops
    assert ops.count("MatMulInteger") >= plain.count("MatMul") // 2


def test_bad_options_fail_in_one_line(exported: tuple[Path, Path]) -> None:
    saved, onnx_dir = exported
    cases = [
        (dict(model=saved, precision="fp16"), "unknown precision 'fp16'"),
        (dict(model=saved, backend="tensorrt"), "unknown backend 'tensorrt'"),
        (dict(model=onnx_dir, precision="bf16"), "onnxruntime runs precision fp32 or int8"),
        (dict(model=saved, backend="onnxruntime"), "needs a folder written by peft-ser export"),
        (dict(model=onnx_dir, backend="torch"), "run it with backend onnxruntime"),
    ]
    for options, message in cases:
        with pytest.raises(InvalidRequestError, match=message):
            peft_ser.predict((np.zeros(8000), 16_000), **options)  # type: ignore[arg-type]
    loaded = inference_model(onnx_dir)
    with pytest.raises(InvalidRequestError, match="runs at fp32"):
        peft_ser.predict((np.zeros(8000), 16_000), model=loaded, precision="int8")
    result = CliRunner().invoke(
        app, ["predict", "x.wav", "--model", str(saved), "--precision", "int4"]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("error: unknown precision 'int4'")


def test_cli_predicts_with_onnxruntime_at_int8(exported: tuple[Path, Path], tmp_path: Path) -> None:
    waveforms, _ = clips((12_000,))
    sf.write(tmp_path / "clip.wav", waveforms[0].numpy(), 16_000)
    arguments = ["predict", str(tmp_path / "clip.wav"), "--model", str(exported[1]), "-f", "csv"]
    result = CliRunner().invoke(
        app, [*arguments, "--backend", "onnxruntime", "--precision", "int8"]
    )
    assert result.exit_code == 0, result.output
    assert "clip.wav" in result.output and "predicted 1 of 1" in result.output


def test_one_loader_and_one_wrapper(exported: tuple[Path, Path]) -> None:
    """`load_model` reads PyTorch models and refuses an export in one line; `inference_model`
    opens either for its backend, the precision in any spelling."""
    saved, onnx_dir = exported
    expected = f"{onnx_dir}: an exported ONNX model; run it with backend onnxruntime"
    with pytest.raises(InvalidRequestError) as raised:
        peft_ser.load_model(onnx_dir)
    assert str(raised.value) == expected
    assert isinstance(inference_model(onnx_dir, precision="float32"), OnnxModel)
    runner = inference_model(saved, precision="BFloat16", device="cpu")
    assert isinstance(runner, TorchModel) and runner.precision == "bf16"
