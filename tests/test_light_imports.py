"""What runs without the heavy libraries: ``import peft_ser``, every command's ``--help``, and an
exported model predicted on onnxruntime, from Python and from ``peft-ser predict``, with torch
made impossible to import. Each is checked in a fresh interpreter, which imports only what
that path needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_export_onnx import trained_model

import peft_ser
from peft_ser.config import RunConfig, load_run_config
from peft_ser.evaluation.evaluate import evaluate
from peft_ser.export.onnx import export_onnx
from peft_ser.inference.loading import load_model
from peft_ser.inference.predict import Prediction, iter_predictions, predict
from peft_ser.models.config import ModelConfig
from peft_ser.models.ser_model import SERModel, build_model
from peft_ser.training.run import train

HEAVY = ("torch", "transformers", "sklearn", "fastapi", "accelerate")
"""What a help text, the package's import or onnxruntime's path never needs."""

BLOCK_TORCH = """
import sys

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "transformers"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, Blocked())
"""
"""A finder that refuses torch and transformers, as on a machine with onnxruntime alone."""


def run_python(code: str) -> tuple[list[str], list[str]]:
    """The lines ``code`` prints in a fresh interpreter, and the heavy libraries loaded by then;
    a failure shows its stderr."""
    report = f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", code + report], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    *lines, heavy = done.stdout.splitlines()
    return lines, json.loads(heavy)


def test_import_loads_no_heavy_library() -> None:
    assert run_python("import peft_ser\nassert peft_ser.EMOTIONS[1] == 'Angry'") == ([], [])


def test_every_public_name_resolves_to_its_definition() -> None:
    expected = {
        "ModelConfig": ModelConfig,
        "build_model": build_model,
        "SERModel": SERModel,
        "RunConfig": RunConfig,
        "load_run_config": load_run_config,
        "train": train,
        "evaluate": evaluate,
        "load_model": load_model,
        "predict": predict,
        "iter_predictions": iter_predictions,
        "Prediction": Prediction,
    }
    for name, value in expected.items():
        assert getattr(peft_ser, name) is value, name
    assert set(peft_ser.__all__) == {*expected, "EMOTIONS", "__version__"}


def test_help_of_every_command_loads_no_heavy_library() -> None:
    """``peft-ser --help`` as the console script runs it, then each command's ``--help``."""
    code = """
import contextlib, io, json, runpy, sys
import typer.main

def helped(argv):
    sys.argv = ["peft-ser", *argv, "--help"]
    with contextlib.redirect_stdout(io.StringIO()) as shown:
        try:
            runpy.run_module("peft_ser.cli", run_name="__main__")
        except SystemExit as exit:
            assert exit.code in (0, None), (argv, exit.code)
    assert "Usage:" in shown.getvalue(), argv

def commands(command, path=()):
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, (*path, name))

helped([])
from peft_ser.cli import app
every = [" ".join(path) for path in commands(typer.main.get_command(app))]
for path in every:
    helped(path.split())
print(json.dumps(every))
"""
    lines, heavy = run_python(code)
    helped = json.loads(lines[-1])
    assert {"train", "evaluate", "predict", "export", "serve", "prepare", "cache show"} <= set(
        helped
    )
    assert {"zoo pin", "sweep", "cross-corpus", "params", "demo", "preprocess"} <= set(helped)
    assert heavy == []


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny LoRA model's ONNX export, and a 1.5-s clip."""
    root = tmp_path_factory.mktemp("light")
    export_onnx(trained_model("tiny-whisper", "lora"), root / "onnx")
    t = np.arange(24_000) / 16_000
    sf.write(root / "clip.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000)
    return root / "onnx", root / "clip.wav"


def test_onnxruntime_predicts_without_torch(exported: tuple[Path, Path]) -> None:
    """`peft_ser.predict` and ``peft-ser predict`` on an exported folder, torch unimportable:
    the same answers as with torch at hand."""
    onnx_dir, clip = exported
    code = f"""{BLOCK_TORCH}
import contextlib, io, json
import peft_ser
from peft_ser.cli import app

[by_call] = peft_ser.predict({str(clip)!r}, model={str(onnx_dir)!r})
with contextlib.redirect_stdout(io.StringIO()) as shown:
    app(["predict", {str(clip)!r}, "--model", {str(onnx_dir)!r}, "-f", "json", "--device",
         "cpu", "--dtype", "fp32"], standalone_mode=False)
print(json.dumps([by_call.probabilities, json.loads(shown.getvalue())[0]["probabilities"]]))
"""
    lines, heavy = run_python(code)
    by_call, by_command = json.loads(lines[-1])
    assert heavy == []
    [expected] = peft_ser.predict(str(clip), model=onnx_dir)
    assert by_call == pytest.approx(expected.probabilities, abs=1e-9)
    assert by_command == pytest.approx(expected.probabilities, abs=1e-9)
