"""``model(waveforms, lengths)`` checks its inputs like `peft_ser.predict`: one line each.

Before these checks, each case below ended in a RuntimeError from inside the backbone, or in
NaN (or integer-scaled) logits without a word.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch

from peft_ser.config import ModelConfig
from peft_ser.models.inputs import nonfinite_outputs_reported_by_caller
from peft_ser.models.ser_model import SERModel, build_model
from peft_ser.utils.errors import InvalidRequestError

T = 16000


@pytest.fixture(scope="module")
def model() -> SERModel:
    return build_model(ModelConfig(backbone="tiny-wavlm"), pretrained=False).eval()


def _waves() -> torch.Tensor:
    return torch.randn(2, T, generator=torch.Generator().manual_seed(0)) * 0.1


def _with_nan(count: int) -> torch.Tensor:
    waves = _waves()
    waves[1, :count] = float("nan")
    waves[1, -1] = float("inf")
    return waves


CASES: list[tuple[str, Any, Any, str]] = [
    (
        "NaN",
        _with_nan(3),
        None,
        "waveforms hold 4 non-finite samples (NaN or ±inf) of 32000, in clip 1",
    ),
    (
        "int16",
        (_waves() * 32767).to(torch.int16),
        None,
        "waveforms must be float samples in [-1, 1]; got dtype int16: integer PCM is not float "
        "samples; convert it first (waveforms.float() / 32768)",
    ),
    ("empty", torch.zeros(1, 0), None, "waveforms are empty (shape (1, 0))"),
    (
        "short",
        torch.zeros(1, 100),
        None,
        "waveforms hold 100 samples per clip; at least 400 (25 ms at 16 kHz, one analysis "
        "frame) are needed",
    ),
    (
        "length 0",
        _waves()[:1],
        torch.tensor([0]),
        "lengths must lie between 400 (25 ms at 16 kHz) and the waveforms' 16000 samples; got 0 "
        "for clip 0",
    ),
    ("negative", _waves(), torch.tensor([T, -5]), "got -5 for clip 1"),
    ("beyond T", _waves(), torch.tensor([T + 1, T * 2]), "got 16001 for clip 0 (and 1 more)"),
    (
        "float lengths",
        _waves(),
        torch.tensor([16000.0, 800.0]),
        "lengths must be whole numbers of samples (an integer tensor); got dtype float32",
    ),
    (
        "lengths per clip",
        _waves(),
        torch.tensor([T]),
        "lengths must hold one sample count per clip, shape (2,); got shape (1,)",
    ),
    (
        "rank 3",
        _waves()[:1].unsqueeze(1),
        None,
        "waveforms must be shaped [B, T] (or one clip [T]); got shape (1, 1, 16000); drop the "
        "channel axis (waveforms.squeeze(1))",
    ),
    ("numpy", _waves().numpy(), None, "waveforms must be a torch.Tensor of float samples; got"),
]


@pytest.mark.parametrize(
    ("waveforms", "lengths", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_inputs_are_refused_in_one_line(
    model: SERModel, waveforms: Any, lengths: Any, message: str
) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        model(waveforms, lengths)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_good_inputs_still_run(model: SERModel) -> None:
    waves = _waves()
    with torch.no_grad():
        batched = model(waves, torch.tensor([T, 8000]))
        alone = model(waves[1, :8000])
        listed = model(waves, [T, 8000])
    assert batched.shape == (2, 4) and bool(torch.isfinite(batched).all())
    torch.testing.assert_close(batched[1:], alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(batched, listed)


def test_nonfinite_outputs_are_reported(model: SERModel) -> None:
    broken = build_model(ModelConfig(backbone="tiny-wavlm"), pretrained=False).eval()
    with torch.no_grad():
        broken.head.classifier[-1].bias[2] = float("nan")
        with pytest.warns(RuntimeWarning, match=r"model output is not finite .* clips 0, 1 of 2"):
            broken(_waves())
        # predict reports it per input (a Failure), so it asks for no second report
        with nonfinite_outputs_reported_by_caller(), warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            assert bool(broken(_waves())[:, 2].isnan().all())


def test_a_training_step_leaves_nonfinite_samples_to_the_loops_guard() -> None:
    """The training loop refuses a step whose loss is not finite and names its clips
    (tests/test_train_guards.py); raising here would stop the run over one bad clip."""
    trained = build_model(ModelConfig(backbone="tiny-wavlm"), pretrained=False).train()
    logits = trained(_with_nan(3))
    assert not bool(torch.isfinite(logits[1]).all())
    with torch.no_grad(), pytest.raises(InvalidRequestError, match="non-finite samples"):
        trained(_with_nan(3))  # train mode, but not a step: checked
