"""Which reduced precision a device computes natively, and the autocast context for it.

bfloat16 pays only where the hardware multiplies it natively: CPUs with AVX512-BF16 or AMX
multiply bf16 matrices at several times their fp32 rate, while elsewhere PyTorch emulates bf16
on the CPU and runs slower than fp32. Training and inference ask here, so ``auto`` means the
same on both paths.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, PartialState

log = logging.getLogger(__name__)


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


def resolve_mixed_precision(setting: str) -> str:
    """The precision ``setting`` means here: ``auto`` is bf16 on GPUs that compute it natively,
    fp16 on other GPUs, and fp32 (``no``) on the CPU.

    bf16 on a CPU with AVX512-BF16 or AMX is Accelerate's autocast (matrix products in bf16;
    weights, gradients, optimiser state and loss in fp32) and about twice as fast, but ``auto``
    does not choose it there: on the demo corpus over seeds 0-5 its dev UAR was lower at five
    seeds and equal at one, and its test UAR, equal on average, twice as spread
    (docs/training.md). Ask for it with ``mixed_precision: bf16``.
    """
    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if device_has_native_bf16("cuda") else "fp16"
    return "no"


def accelerator_for(mixed_precision: str) -> Accelerator:
    """An Accelerator with ``mixed_precision`` resolved (see `resolve_mixed_precision`).

    Accelerate keeps one precision per process and refuses another; a single process that runs
    one configuration after another (a grid, a test session) gets a fresh state for each.
    Under ``accelerate launch`` the launcher's state is kept as it is.
    """
    chosen = resolve_mixed_precision(mixed_precision)
    if chosen == "bf16" and not torch.cuda.is_available() and not cpu_has_native_bf16():
        log.warning("bf16 on a CPU without native bf16 is emulated: slower than fp32")
    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") != chosen and PartialState().num_processes == 1:
        AcceleratorState._reset_state()
    return Accelerator(mixed_precision=chosen)
