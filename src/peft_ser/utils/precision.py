"""The words for numeric precision, and which reduced precision a device computes natively.

One vocabulary for every knob: ``fp32``, ``bf16``, ``fp16`` and ``int8`` (``auto`` where a
choice is made per device). torch's names (``float32``, ``bfloat16``, ``float16``, ``half``, a
``torch.dtype``) and ``qint8`` are accepted as other spellings of the same words, so calls and
files written with them keep working. The knobs differ in what they set:

* ``precision`` (`predict`, ``peft-ser predict``/``serve --precision``): how a float32 model
  computes at inference, `PRECISIONS`: fp32, bf16 autocast, or int8 dynamic quantization;
* ``dtype`` (`load_model`, ``--dtype``): what a loaded PyTorch model's weights are stored and
  computed in, `DTYPES`;
* ``mixed_precision`` (a run config's key): training's autocast, ``auto``, ``no`` (fp32),
  ``bf16`` or ``fp16`` (Accelerate's words, which a run config keeps; ``fp32`` reads as ``no``).

bfloat16 pays only where the hardware multiplies it natively: CPUs with AVX512-BF16 or AMX
multiply bf16 matrices at several times their fp32 rate, while elsewhere PyTorch emulates bf16
on the CPU and runs slower than fp32. Training and inference ask here, so ``auto`` means the
same on both paths. torch and Accelerate are imported by the functions that need them: the
names alone (``import peft_ser``, the command line's ``--help``, onnxruntime) load neither.
"""

from __future__ import annotations

import logging
import os
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING

from peft_ser.utils.errors import InvalidRequestError, suggest

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "int8")
"""How a float32 model computes at inference (``precision``)."""
DTYPES = ("fp32", "fp16", "bf16")
"""What a loaded PyTorch model's weights are stored and computed in (``dtype``)."""
_SPELLINGS = {
    "float32": "fp32",
    "float": "fp32",
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "qint8": "int8",
}
"""Other spellings of the words: torch's names of the dtypes, and of int8 weights."""
_TORCH_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def precision_word(value: object) -> str:
    """``value`` as this package's word: ``torch.bfloat16``, ``BFloat16`` and ``bf16`` are all
    ``bf16``; a word it does not know is returned lowered, for the caller to refuse."""
    name = str(value).strip().lower().removeprefix("torch.")
    return _SPELLINGS.get(name, name)


def resolve_precision(precision: str | None) -> str:
    """One of `PRECISIONS` (any spelling); None is fp32."""
    if precision is None:
        return "fp32"
    name = precision_word(precision)
    if name not in PRECISIONS:
        raise InvalidRequestError(
            f"unknown precision {precision!r}{suggest(name, PRECISIONS)}; give one of "
            f"{', '.join(PRECISIONS)}"
        )
    return name


def dtype_word(dtype: object) -> str:
    """One of `DTYPES` for a dtype given by name (any spelling) or as a torch dtype; None is
    fp32. Checked without torch, so a wrong name is refused before anything loads."""
    if dtype is None:
        return "fp32"
    name = precision_word(dtype)
    if name not in DTYPES:
        spellings = [*DTYPES, *(key for key, word in _SPELLINGS.items() if word in DTYPES)]
        raise InvalidRequestError(
            f"unknown dtype {str(dtype)!r}{suggest(name, spellings)}; give one of "
            f"{', '.join(DTYPES)}"
        )
    return name


def resolve_dtype(dtype: object) -> torch.dtype:
    """The torch dtype of `dtype_word` (float32 for None)."""
    import torch

    dtype_of: torch.dtype = getattr(torch, _TORCH_NAMES[dtype_word(dtype)])
    return dtype_of


def check_float32_weights(precision: str, weights: str) -> None:
    """Refuse a reduced ``precision`` on weights that are not fp32: bf16 autocast and int8
    quantization start from a float32 model, and a model cast to another dtype already
    computes in it."""
    if precision != "fp32" and weights != "fp32":
        raise InvalidRequestError(
            f"precision {precision} starts from fp32 weights; these are {weights} (give dtype "
            "fp32 with a precision, or a dtype alone)"
        )


def cpu_has_native_bf16() -> bool:
    """True where this CPU multiplies bfloat16 matrices in hardware (AVX512-BF16 or AMX) and
    PyTorch may use it: ``ATEN_CPU_CAPABILITY`` or ``ONEDNN_MAX_CPU_ISA`` capped below
    AVX-512 (as when simulating an AVX2-only CPU) leave bf16 emulated, ten times slower."""
    import torch

    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if aten in _BELOW_AVX512 or (onednn and onednn not in _ONEDNN_WITH_BF16):
        return False
    cpu = torch.cpu
    return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())


_BELOW_AVX512 = frozenset({"default", "avx2", "zvector", "vsx"})
"""``ATEN_CPU_CAPABILITY`` values that keep PyTorch's kernels off AVX-512."""
_ONEDNN_WITH_BF16 = frozenset(
    {
        "AVX512_CORE_BF16",
        "AVX512_CORE_FP16",
        "AVX512_CORE_AMX",
        "AVX512_CORE_AMX_FP16",
        "AVX10_1_512_AMX",
        "AVX10_1_512_AMX_FP16",
        "ALL",
        "DEFAULT",
    }
)
"""``ONEDNN_MAX_CPU_ISA`` values that let oneDNN multiply bf16 natively."""


def device_has_native_bf16(device: torch.device | str) -> bool:
    """True where ``device`` computes bfloat16 natively: such a CPU, or a CUDA GPU with bf16."""
    import torch

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
    import torch

    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


SCORING = "scoring"
"""The precision word evaluation asks for a saved model: ``auto`` on a GPU, fp32 on every
CPU (`resolve_mixed_precision`)."""


def resolve_mixed_precision(setting: str) -> str:
    """The precision ``setting`` means here: ``auto`` is bf16 on GPUs and CPUs that compute it
    natively, fp16 on other GPUs, and fp32 (``no``) on other CPUs.

    bf16 on a CPU is Accelerate's autocast (matrix products in bf16; weights, gradients,
    optimiser state and loss in fp32). Where the CPU multiplies bf16 natively (AVX512-BF16 or
    AMX) it cost no accuracy and ran faster: ``bench/bench_bf16.py --seeds 0,1,2,3,4 --epochs
    4`` (the demo's recipe, Whisper tiny.en + LoRA r16, on 1,280 generated clips with a
    560-clip test split) gave test UAR 0.844 ± 0.015 against fp32's 0.836 ± 0.012, a paired
    difference of +0.008 ± 0.006 (95 % interval +0.000 to +0.015, not lower at any of five
    seeds), and epochs 1.86× faster on a quiet Intel Xeon with AMX at the demo's 2 threads,
    1.2× on one thread of a busy one (docs/training.md). Other CPUs emulate bf16 about ten
    times slower than fp32, so they keep fp32. The demo's 32 test clips, where one clip moves
    UAR by 0.03, could not separate the two and once kept ``auto`` at fp32 everywhere.

    `SCORING` is ``auto`` on a GPU and fp32 on every CPU: a saved model's scores then do not
    depend on which CPU scores it (a run folder is scored in its own ``mixed_precision``).
    """
    if setting not in ("auto", SCORING):
        return setting
    import torch

    if torch.cuda.is_available():
        return "bf16" if device_has_native_bf16("cuda") else "fp16"
    return "bf16" if setting == "auto" and cpu_has_native_bf16() else "no"


def accelerator_for(mixed_precision: str) -> Accelerator:
    """An Accelerator with ``mixed_precision`` resolved (see `resolve_mixed_precision`).

    Accelerate keeps one precision per process and refuses another; a single process that runs
    one configuration after another (a grid, a test session) gets a fresh state for each.
    Under ``accelerate launch`` the launcher's state is kept as it is.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    chosen = resolve_mixed_precision(mixed_precision)
    if chosen == "bf16" and not torch.cuda.is_available() and not cpu_has_native_bf16():
        log.warning("bf16 on a CPU without native bf16 is emulated: slower than fp32")
    shared = AcceleratorState._shared_state
    if shared and shared.get("_mixed_precision") != chosen and PartialState().num_processes == 1:
        AcceleratorState._reset_state()
    return Accelerator(mixed_precision=chosen)
