"""The precision words: one vocabulary, torch's names as other spellings, wrong words refused in
one line; bf16 detection agrees with the CPU's own flags, and the autocast context computes in
bf16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.utils import precision
from peft_ser.utils.errors import InvalidRequestError
from peft_ser.utils.precision import (
    SCORING,
    bf16_autocast,
    check_float32_weights,
    cpu_has_native_bf16,
    device_has_native_bf16,
    dtype_word,
    resolve_dtype,
    resolve_mixed_precision,
    resolve_precision,
)


def test_every_spelling_of_a_word_is_that_word() -> None:
    for given in ("bf16", "BF16", "bfloat16", "torch.bfloat16", torch.bfloat16):
        assert dtype_word(given) == "bf16"
        assert resolve_dtype(given) is torch.bfloat16
    for given in ("fp16", "float16", "half", torch.float16):
        assert resolve_dtype(given) is torch.float16
    assert resolve_dtype(None) is torch.float32 and dtype_word("float32") == "fp32"
    spellings = (None, "FP32", "bfloat16", "qint8")
    assert [resolve_precision(p) for p in spellings] == ["fp32", "fp32", "bf16", "int8"]


def test_a_word_a_setting_does_not_take_is_refused_in_one_line() -> None:
    with pytest.raises(
        InvalidRequestError, match=r"^unknown dtype 'int8'; give one of fp32, fp16, bf16$"
    ):
        dtype_word("int8")
    with pytest.raises(
        InvalidRequestError, match=r"unknown dtype 'bf61' \(did you mean 'bf16'\?\)"
    ):
        dtype_word("bf61")
    with pytest.raises(
        InvalidRequestError, match=r"^unknown precision 'half' \(did you mean 'bf16'\?\); give one"
    ):
        resolve_precision("half")
    with pytest.raises(
        InvalidRequestError, match=r"^precision int8 starts from fp32 weights; these"
    ):
        check_float32_weights("int8", "bf16")
    check_float32_weights("fp32", "bf16")  # a dtype alone
    check_float32_weights("bf16", "fp32")


def test_the_command_line_refuses_a_precision_on_cast_weights_before_loading() -> None:
    """The model does not exist: the options are checked first."""
    result = CliRunner().invoke(
        app,
        ["predict", "x.wav", "--model", "no-such-model", "--dtype", "bf16", "--precision", "int8"],
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "error: precision int8 starts from fp32 weights; these are bf16 (give dtype fp32 with a "
        "precision, or a dtype alone)"
    )


def _cpu_flags() -> set[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_detection_matches_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    flags = _cpu_flags()
    if flags:
        assert cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)
    assert device_has_native_bf16("cpu") == cpu_has_native_bf16()
    assert device_has_native_bf16("meta") is False


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ATEN_CPU_CAPABILITY", "avx2"), ("ATEN_CPU_CAPABILITY", "default"),
     ("ONEDNN_MAX_CPU_ISA", "AVX2"), ("ONEDNN_MAX_CPU_ISA", "avx512_core")],
)  # fmt: skip
def test_kernels_capped_below_avx512_count_as_no_native_bf16(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """Simulating an AVX2-only CPU on one with AMX: `auto` must not pick emulated bf16."""
    monkeypatch.setenv(variable, value)
    assert cpu_has_native_bf16() is False
    assert resolve_mixed_precision("auto") == "no"


def test_scoring_is_fp32_on_every_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert resolve_mixed_precision("auto") == "bf16"
    assert resolve_mixed_precision(SCORING) == "no"


def test_autocast_runs_matmuls_in_bf16_and_can_be_off() -> None:
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with bf16_autocast("cpu"):
        assert (a @ b).dtype == torch.bfloat16
    with bf16_autocast("cpu", enabled=False):
        assert (a @ b).dtype == torch.float32
