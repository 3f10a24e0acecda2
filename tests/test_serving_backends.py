"""Backends and precisions in ``peft-ser serve``: each served answer equals `peft_ser.predict`'s
on the same model at the same backend and precision; what cannot run is refused at start.

The model is a saved tiny-whisper + LoRA model (see `_serving`) and its ONNX export.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _serving import assert_same, local_client, save_models, write_clip
from typer.testing import CliRunner

import peft_ser
import peft_ser.serving
from peft_ser.cli import app
from peft_ser.export.onnx import export_onnx
from peft_ser.inference.palette import palette
from peft_ser.serving import ModelPool, ModelSpec, create_app
from peft_ser.utils.errors import InvalidRequestError


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A saved model and its export by ``export_onnx``."""
    root = tmp_path_factory.mktemp("served")
    [saved] = save_models(root, seeds=(1,))
    export_onnx(peft_ser.load_model(saved), root / "onnx")
    return saved, root / "onnx"


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("clips")
    return [write_clip(root / "short.wav", 0.7), write_clip(root / "long.wav", 2.5, pitch=330.0)]


def answers(pool: ModelPool, name: str, clips: list[Path]) -> Iterator[dict]:
    """The server's predictions of ``clips`` by model ``name``, in 1-s windows every 0.5 s."""
    with local_client(create_app(pool)) as client:
        for clip in clips:
            response = client.post(
                f"/v1/predict?model={name}&window=1&hop=0.5", content=clip.read_bytes()
            )
            assert response.status_code == 200, response.text
            yield response.json()["prediction"]


def assert_serves_as_predict(
    pool: ModelPool, name: str, source: Path, clips: list[Path], **options: str
) -> None:
    served = list(answers(pool, name, clips))
    reference = [  # one clip a call, as the server runs each request
        peft_ser.predict(clip, model=source, window=1.0, hop=0.5, **options)[0] for clip in clips
    ]
    assert len(served[1]["windows"]) == 4
    for answer, expected in zip(served, reference, strict=True):
        assert_same(answer, expected)


def listed(pool: ModelPool) -> dict[str, dict]:
    with local_client(create_app(pool)) as client:
        return {model["name"]: model for model in client.get("/v1/models").json()["models"]}


def test_bf16_equals_predict_and_still_shares(
    sources: tuple[Path, Path], clips: list[Path]
) -> None:
    saved, _ = sources
    pool = ModelPool.load(
        [ModelSpec("a", str(saved)), ModelSpec("b", str(saved))], precision="bf16"
    )
    assert_serves_as_predict(pool, "a", saved, clips, precision="bf16")
    about = listed(pool)["a"]
    assert (about["backend"], about["precision"], about["frozen_tensors_shareable"]) == (
        "torch",
        "bf16",
        True,
    )
    first, second = (served.model for served in pool)
    assert first is not None and second is not None
    frozen = [p for p in first.parameters() if not p.requires_grad]
    assert all(any(p is q for q in second.parameters()) for p in frozen)
    assert pool.memory().shared_bytes >= sum(p.numel() * 4 for p in frozen)


def test_onnx_beside_torch(sources: tuple[Path, Path], clips: list[Path]) -> None:
    saved, exported = sources
    pool = ModelPool.load([ModelSpec("torch", str(saved)), ModelSpec("onnx", str(exported))])
    assert_serves_as_predict(pool, "onnx", exported, clips, backend="onnxruntime")
    assert_serves_as_predict(pool, "torch", saved, clips)
    about = listed(pool)
    labels = peft_ser.load_model(saved).labels
    assert about["onnx"] == {
        "name": "onnx",
        "labels": labels,
        "colours": palette(labels),
        "backend": "onnxruntime",
        "precision": "fp32",
        "backbone": "tiny-whisper",
        "method": "lora",
        "frozen_tensors_shareable": False,
        "trainable_parameters": None,
        "trainable_bytes": None,
        "total_parameters": None,
    }
    assert about["torch"]["backend"] == "torch" and about["torch"]["trainable_parameters"] > 0
    alone = ModelPool.load([ModelSpec("torch", str(saved))]).memory()
    assert pool.memory() == alone  # the ONNX model holds no torch tensors


def test_int8_equals_predict_and_holds_its_own_copy(
    sources: tuple[Path, Path], clips: list[Path]
) -> None:
    saved, exported = sources
    specs = [ModelSpec("a", str(saved)), ModelSpec("b", str(saved)), ModelSpec("x", str(exported))]
    pool = ModelPool.load(specs, precision="int8")
    assert_serves_as_predict(pool, "a", saved, clips, precision="int8")
    assert_serves_as_predict(pool, "x", exported, clips, precision="int8")
    about = listed(pool)
    assert [about[name]["precision"] for name in "abx"] == ["int8"] * 3
    assert about["a"]["frozen_tensors_shareable"] is False
    assert (
        about["a"]["trainable_parameters"]
        == listed(ModelPool.load(specs[:1]))["a"]["trainable_parameters"]
    )  # counted on the model as trained, before merging and quantizing
    memory = pool.memory()
    assert memory.shared_bytes == 0
    fp32 = ModelPool.load(specs[:1]).memory().private_bytes
    assert 0 < memory.private_bytes < 2 * fp32  # two int8 copies, weights a quarter the size


def test_bad_combinations_refused_before_loading(sources: tuple[Path, Path]) -> None:
    saved, exported = sources
    with pytest.raises(InvalidRequestError, match="bf16 is a torch precision"):
        ModelPool.load(
            [ModelSpec("a", str(saved)), ModelSpec("x", str(exported))], precision="bf16"
        )
    with pytest.raises(InvalidRequestError, match="run it with backend onnxruntime"):
        ModelPool.load([ModelSpec("x", str(exported))], backend="torch")


def test_serve_command_passes_backend_and_precision(
    sources: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    saved, exported = sources
    calls: list[tuple] = []
    monkeypatch.setattr(peft_ser.serving, "serve", lambda *args: calls.append(args))
    models = ["serve", "-m", f"t={saved}", "-m", f"x={exported}", "--device", "cpu"]
    result = CliRunner().invoke(app, [*models, "--precision", "int8"])
    assert result.exit_code == 0, result.output
    pool = calls[-1][0].state.pool
    assert [(s.backend, s.precision) for s in pool] == [("torch", "int8"), ("onnxruntime", "int8")]
    forced = CliRunner().invoke(app, ["serve", "-m", str(exported), "--backend", "onnxruntime"])
    assert forced.exit_code == 0, forced.output
    assert [s.backend for s in calls[-1][0].state.pool] == ["onnxruntime"]
    for options, problem in (
        (["-m", str(exported), "--precision", "bf16"], "bf16 is a torch precision"),
        (["-m", str(saved), "--backend", "onnxruntime"], "needs a folder written by peft-ser"),
        (["-m", str(saved), "--precision", "fp16"], "unknown precision 'fp16'"),
        (["-m", str(saved), "--backend", "tensorrt"], "unknown backend 'tensorrt'"),
    ):
        refused = CliRunner().invoke(app, ["serve", *options])
        assert refused.exit_code == 2, (options, refused.output)
        [line] = refused.output.strip().splitlines()
        assert line.startswith("error:") and problem in line, (options, line)
    assert len(calls) == 2  # nothing refused was served
