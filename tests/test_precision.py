"""bf16 detection agrees with the CPU's own flags, and the autocast context computes in bf16."""

from __future__ import annotations

from pathlib import Path

import torch

from peft_ser.utils.precision import bf16_autocast, cpu_has_native_bf16, device_has_native_bf16


def _cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_detection_matches_the_cpu_flags() -> None:
    flags = _cpu_flags()
    if flags:
        assert cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)
    assert device_has_native_bf16("cpu") == cpu_has_native_bf16()
    assert device_has_native_bf16("meta") is False


def test_autocast_runs_matmuls_in_bf16_and_can_be_off() -> None:
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with bf16_autocast("cpu"):
        assert (a @ b).dtype == torch.bfloat16
    with bf16_autocast("cpu", enabled=False):
        assert (a @ b).dtype == torch.float32
