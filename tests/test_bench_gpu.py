"""The GPU benchmark (``bench/bench_gpu.py``) as a smoke run on the CPU, its refusal without a
GPU, and its model-FLOPs count (``bench/flops.py``) against torch's own operator count."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from peft_ser.config import ModelConfig
from peft_ser.models.backbones.registry import BACKBONES
from peft_ser.models.ser_model import build_model

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "bench_gpu.py"
sys.path.insert(0, str(SCRIPT.parent))
from flops import ssl_lora_step_flops  # noqa: E402

NUMBER = r"([-+0-9.eE]+|nan|inf)"


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(SCRIPT.parent)])}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT, check=False,
    )  # fmt: skip


def _figures(pattern: str, text: str) -> list[float]:
    found = re.search(pattern, text, re.MULTILINE)
    assert found, f"no line matching {pattern!r} in:\n{text}"
    values = [float(group) for group in found.groups()]
    assert all(math.isfinite(v) for v in values), found.group(0)
    return values


@pytest.mark.slow  # the benchmark runs in its own process
def test_a_tiny_cpu_run_prints_every_figure_finite() -> None:
    result = _run(
        "--device", "cpu", "--tiny", "--train", "16", "--dev", "8", "--test", "8",
        "--batch", "4", "--num-workers", "0",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for phase, clips in (("train", 16), ("dev", 8), ("test", 8)):
        seconds, counted, rate, tflop, achieved, mfu = _figures(
            rf"^{phase} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER} +{NUMBER}%$", out
        )
        assert counted == clips
        assert seconds > 0 and tflop > 0 and mfu >= 0
        assert rate == pytest.approx(clips / seconds, rel=0.01)
        assert achieved == pytest.approx(tflop / seconds, rel=0.01)
    _figures(rf"^checkpoint +{NUMBER}$", out)
    built = _figures(rf"built in {NUMBER} s$", out)
    assert built[0] > 0
    median, best = _figures(rf"^bf16 matmul .*: {NUMBER} TFLOP/s median \(best {NUMBER}\)", out)
    assert 0 < median <= best
    _figures(rf"^extrapolated 5 folds x 30 epochs .* = {NUMBER} min", out)
    assert "peak GPU memory: n/a (cpu)" in out


@pytest.mark.slow  # the benchmark runs in its own process
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_ends_in_one_line() -> None:
    result = _run("--train", "1", "--dev", "1", "--test", "1", timeout=120)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--device cuda" in lines[0] and "no CUDA GPU" in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("backbone", "samples"),
    [
        ("tiny-wavlm", 8000),
        ("tiny-wav2vec2", 8000),
        ("tiny-wav2vec2-large", 7000),
        ("wavlm-base-plus", 8000),
    ],
)
def test_the_flop_count_is_torchs_count_of_a_lora_training_step(
    backbone: str, samples: int
) -> None:
    """The analytic count equals torch's operator count of a forward and its backward, padded
    frames included (``wavlm-base-plus``: the benchmark's own architecture, at 0.5 s)."""
    config = ModelConfig(backbone=backbone, method="lora", lora_rank=8, head_dim=64)
    model = build_model(config, pretrained=False).train()
    waveforms = torch.randn(3, samples)
    lengths = torch.tensor([samples, samples - 2000, samples // 3])
    with FlopCounterMode(display=False) as forward:
        loss = model(waveforms, lengths).square().sum()
    with FlopCounterMode(display=False) as backward:
        loss.backward()
    counted = ssl_lora_step_flops(BACKBONES[backbone].config(), 3, samples, 8, (64, 4))
    assert (counted[0].total, counted[1].total) == (
        forward.get_total_flops(),
        backward.get_total_flops(),
    )
