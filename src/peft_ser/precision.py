"""Which reduced precision a device computes natively, and the autocast context for it.

bfloat16 pays only where the hardware multiplies it natively: CPUs with AVX512-BF16 or AMX
multiply bf16 matrices at several times their fp32 rate, while elsewhere PyTorch emulates bf16
on the CPU and runs slower than fp32. Training and inference ask here, so ``auto`` means the
same on both paths.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch


def cpu_has_native_bf16() -> bool:
    """True where this CPU multiplies bfloat16 matrices in hardware (AVX512-BF16 or AMX)."""
    cpu = torch.cpu
    return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())


def device_has_native_bf16(device: torch.device | str) -> bool:
    """True where ``device`` computes bfloat16 natively: such a CPU, or a CUDA GPU with bf16."""
    kind = torch.device(device).type
    if kind == "cpu":
        return cpu_has_native_bf16()
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return False


def bf16_autocast(device: torch.device | str, enabled: bool = True) -> AbstractContextManager[None]:
    """Autocast to bfloat16 on ``device`` (matrix products in bf16, reductions and softmax kept
    in fp32 by autocast's own lists), or nothing when ``enabled`` is false."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
