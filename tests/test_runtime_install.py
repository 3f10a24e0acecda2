"""``pip install 'peft-ser[runtime]'``: an exported model predicts in a venv without PyTorch.

A fresh venv gets the package with the ``runtime`` extra only (from the package index, as a
user's would); torch must not be importable there. Its ``peft-ser predict`` on an ONNX export
gives the probabilities of this (full) install's within 1e-4, and commands that need the
training stack say which extra to install, in one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _tones import tone
from test_export_onnx import trained_model

import peft_ser
from peft_ser.export.onnx import export_onnx

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("runtime") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [
        str(venv / "bin" / "python"),
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, f"{ROOT}[runtime]"], check=True, capture_output=True)
    return venv


def run(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "peft-ser"), *args], capture_output=True, text=True, timeout=300
    )


def test_an_export_predicts_without_torch(runtime_venv: Path, tmp_path: Path) -> None:
    no_torch = subprocess.run([str(runtime_venv / "bin" / "python"), "-c", "import torch"])
    assert no_torch.returncode != 0  # the runtime install has no PyTorch
    export = tmp_path / "onnx"
    export_onnx(trained_model("tiny-whisper", "lora"), export)
    clip = tmp_path / "clip.wav"
    sf.write(clip, np.concatenate([tone(1.5, 220.0), tone(1.5, 520.0)]), 16000)
    answer = run(runtime_venv, "predict", str(clip), "--model", str(export), "--backend",
                 "onnxruntime", "--window", "1", "--format", "json")  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    [light] = json.loads(answer.stdout)
    [full] = peft_ser.predict(clip, model=export, backend="onnxruntime", window=1.0)
    assert light["label"] == full.label
    np.testing.assert_allclose(
        list(light["probabilities"].values()), list(full.probabilities.values()), atol=1e-4
    )
    assert [w["label"] for w in light["windows"]] == [w.label for w in full.windows]


def test_commands_that_need_torch_name_the_extra(runtime_venv: Path, tmp_path: Path) -> None:
    refused = run(runtime_venv, "params", "--backbone", "whisper-tiny", "--method", "lora")
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: this needs the torch package, which is not installed: pip install 'peft-ser[train]'"
    ]
    assert run(runtime_venv, "--help").returncode == 0
