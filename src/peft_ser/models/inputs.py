"""What `SERModel.forward` accepts, checked before the backbone sees it.

``model(waveforms, lengths)`` is a public entry like `peft_ser.predict`, and refuses the same
things with `InvalidRequestError`, one line each: integer PCM given as samples, a wrong rank,
an empty batch or clip, clips shorter than one analysis frame, lengths that are not whole
numbers of samples or do not fit the waveforms, and NaN or infinite samples. Without these
checks each ends in a RuntimeError deep inside the backbone, or in NaN logits without a word.

The checks run on every training step too, so they cost little: shapes and dtypes are read
from the tensors' metadata, and the value checks (lengths in range, samples finite) are
reduced to one boolean, so a GPU waits for the device once per call. Only when that boolean
says something is wrong are the details counted for the message.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch

from peft_ser.data.frames import MIN_SAMPLES
from peft_ser.utils.errors import InvalidRequestError


def checked_batch(
    waveforms: object, lengths: object, *, finite_samples: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """``waveforms`` as ``[B, T]`` float samples and ``lengths`` as ``[B]`` sample counts.

    ``lengths`` None means every clip fills its row. ``finite_samples`` False leaves NaN or
    infinite samples to the caller (a training step, whose non-finite guard refuses the step
    and names the clips). Raises `InvalidRequestError`.
    """
    batch = _waveform_batch(waveforms)
    counts = _lengths(lengths, batch)
    if torch.jit.is_tracing():  # an export traces shapes, not values
        return batch, counts
    size = batch.shape[1]
    fits = ((counts >= MIN_SAMPLES) & (counts <= size)).all()
    good = fits.to(batch.device)
    if finite_samples:
        good = good & torch.isfinite(batch).all()
    if not bool(good):  # the one synchronisation
        _refuse_values(batch, counts, finite_samples)
    return batch, counts


def _waveform_batch(waveforms: object) -> torch.Tensor:
    if not isinstance(waveforms, torch.Tensor):
        raise InvalidRequestError(
            f"waveforms must be a torch.Tensor of float samples; got {type(waveforms).__name__} "
            "(torch.as_tensor(samples, dtype=torch.float32))"
        )
    if not waveforms.is_floating_point():
        raise InvalidRequestError(
            f"waveforms must be float samples in [-1, 1]; got dtype "
            f"{str(waveforms.dtype).removeprefix('torch.')}{_conversion_hint(waveforms.dtype)}"
        )
    batch = waveforms.unsqueeze(0) if waveforms.dim() == 1 else waveforms
    if batch.dim() != 2:
        hint = (
            "; drop the channel axis (waveforms.squeeze(1))"
            if batch.dim() == 3 and batch.shape[1] == 1
            else "; give 16 kHz mono samples (down-mix channels first)"
        )
        raise InvalidRequestError(
            f"waveforms must be shaped [B, T] (or one clip [T]); got shape "
            f"{tuple(waveforms.shape)}{hint}"
        )
    if batch.numel() == 0:
        raise InvalidRequestError(f"waveforms are empty (shape {tuple(waveforms.shape)})")
    if batch.shape[1] < MIN_SAMPLES:
        raise InvalidRequestError(
            f"waveforms hold {batch.shape[1]} samples per clip; at least {MIN_SAMPLES} (25 ms at "
            "16 kHz, one analysis frame) are needed"
        )
    return batch


def _conversion_hint(dtype: torch.dtype) -> str:
    """How to turn integer PCM of ``dtype`` into float samples, for the error message."""
    if dtype == torch.uint8:
        return (
            ": 8-bit PCM is not float samples; convert it first ((waveforms.float() - 128) / 128)"
        )
    if dtype in (torch.int8, torch.int16, torch.int32, torch.int64):
        scale = 2 ** (torch.iinfo(dtype).bits - 1)
        return f": integer PCM is not float samples; convert it first (waveforms.float() / {scale})"
    return ""


def _lengths(lengths: object, batch: torch.Tensor) -> torch.Tensor:
    """``lengths`` as a ``[B]`` integer tensor (every row full when None)."""
    if lengths is None:
        return torch.full((batch.shape[0],), batch.shape[1], dtype=torch.long)
    if not isinstance(lengths, torch.Tensor):
        try:
            lengths = torch.as_tensor(lengths)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidRequestError(
                f"lengths must be a tensor of sample counts; got {type(lengths).__name__}"
            ) from None
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise InvalidRequestError(
            "lengths must be whole numbers of samples (an integer tensor); got dtype "
            f"{str(lengths.dtype).removeprefix('torch.')}"
        )
    if lengths.shape != (batch.shape[0],):
        raise InvalidRequestError(
            f"lengths must hold one sample count per clip, shape ({batch.shape[0]},); got shape "
            f"{tuple(lengths.shape)}"
        )
    return lengths


def _refuse_values(batch: torch.Tensor, counts: torch.Tensor, finite_samples: bool) -> None:
    """Raise for the first problem the combined check found: a length, or non-finite samples."""
    size = batch.shape[1]
    wrong = ((counts < MIN_SAMPLES) | (counts > size)).nonzero().flatten().tolist()
    if wrong:
        row = wrong[0]
        raise InvalidRequestError(
            f"lengths must lie between {MIN_SAMPLES} (25 ms at 16 kHz) and the waveforms' {size} "
            f"samples; got {int(counts[row])} for clip {row}"
            + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else "")
        )
    if finite_samples:
        bad = ~torch.isfinite(batch)
        rows = bad.any(dim=1).nonzero().flatten().tolist()
        raise InvalidRequestError(
            f"waveforms hold {int(bad.sum())} non-finite samples (NaN or ±inf) of "
            f"{batch.numel()}, in clip{'s' if len(rows) > 1 else ''} "
            f"{', '.join(map(str, rows[:8]))}{' …' if len(rows) > 8 else ''}"
        )


_CALLER_REPORTS: ContextVar[bool] = ContextVar("peft_ser_caller_reports_nonfinite", default=False)


@contextmanager
def nonfinite_outputs_reported_by_caller() -> Iterator[None]:
    """Within this block (in this thread or task), `warn_nonfinite` stays quiet: for callers
    that report non-finite outputs themselves, per input (`peft_ser.predict`'s `Failure`)."""
    token = _CALLER_REPORTS.set(True)
    try:
        yield
    finally:
        _CALLER_REPORTS.reset(token)


def warn_nonfinite(outputs: torch.Tensor) -> None:
    """Warn, naming the clips, when outputs hold NaN or infinite values: a model fed finite
    samples that answers NaN (overflow in half precision, weights changed since loading) is
    never passed on silently."""
    if torch.jit.is_tracing() or _CALLER_REPORTS.get():
        return
    rows = (~torch.isfinite(outputs)).any(dim=-1).nonzero().flatten().tolist()
    if rows:
        warnings.warn(
            f"model output is not finite (NaN or ±inf) for clip{'s' if len(rows) > 1 else ''} "
            f"{', '.join(map(str, rows[:8]))}{' …' if len(rows) > 8 else ''} of {len(outputs)}",
            RuntimeWarning,
            stacklevel=3,
        )
