"""Prediction on recordings: files or arrays at any rate and channel count, batched by length.

Every input is decoded, down-mixed and resampled to the models' 16 kHz mono, then cut into
segments. A clip up to the whole-clip limit is one segment. A longer recording is cut into
equal, overlapping windows, each predicted on its own, and the recording's answer is the mean of
its windows' probabilities: emotion changes over a long recording, and a model trained on
utterances of a few seconds judges a few seconds best.

Segments of all inputs are sorted by length and batched with their ``lengths``. Sorting keeps
padding small; passing ``lengths`` keeps it harmless, since `SERModel` masks padded samples, so an
answer never depends on what it was batched with.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, TypeAlias

import numpy as np
import torch

from .audio import SAMPLE_RATE, AudioError, load_audio, to_mono_16k
from .backends import InferenceModel, inference_model
from .loading import (
    InvalidRequestError,
    available_devices,
    load_model,
    resolve_device,
    resolve_dtype,
)
from .model import SERModel

WHOLE_CLIP_SECONDS = 30.0
"""By default a clip up to this long is predicted whole (Whisper's window: its encoder limit)."""
DEFAULT_WINDOW_SECONDS = 10.0
"""Window length for longer recordings when none is given; the hop defaults to half a window."""
MIN_SAMPLES = 400
"""25 ms: one analysis frame of every backbone's front end; shorter clips cannot be classified."""
_CHUNK_BATCHES = 8
"""Inputs are decoded this many batches at a time, so a large folder never sits in memory."""
_EXPECTED_INPUTS = "give a file path, a (samples, sample_rate) tuple, or a list of them"

__all__ = [
    "Failure",
    "InvalidRequestError",
    "Prediction",
    "WindowPrediction",
    "available_devices",
    "iter_predictions",
    "load_model",
    "predict",
    "resolve_device",
    "resolve_dtype",
]

ArrayInput: TypeAlias = tuple[Any, float]
"""``(samples, sample_rate)``: samples ``(T,)``, ``(T, C)`` or ``(C, T)``, float or integer PCM;
the rate in Hz, a whole number (``16000`` or ``16000.0``)."""
Input: TypeAlias = str | os.PathLike[str] | ArrayInput


@dataclass(frozen=True)
class WindowPrediction:
    """The answer for one window of a long recording; ``start``/``end`` in seconds."""

    start: float
    end: float
    label: str
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Prediction:
    """The answer for one input; every probability is finite.

    For a recording cut into windows, ``windows`` holds each window's answer, and ``label`` and
    ``probabilities`` summarise the whole recording (mean of the window probabilities); for a clip
    predicted whole, ``windows`` is empty.
    """

    source: str
    duration: float
    label: str
    probabilities: dict[str, float]
    windows: list[WindowPrediction] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Failure:
    """An input that could not be predicted; ``error`` names the input and the problem.

    ``error.kind`` says why: ``missing``, ``empty``, ``unreadable``, ``non_finite`` (NaN or
    infinite samples) or ``non_finite_output`` (the model produced NaN or infinite scores).
    """

    source: str
    error: AudioError


@dataclass(frozen=True)
class _Segmentation:
    """How clips become segments, in samples: whole up to ``whole``, else windows."""

    whole: int
    window: int
    hop: int

    def spans(self, num_samples: int) -> list[tuple[int, int]]:
        """Equal windows every ``hop`` samples; the last one is aligned to the recording's end."""
        if num_samples <= self.whole:
            return [(0, num_samples)]
        starts = [*range(0, num_samples - self.window, self.hop), num_samples - self.window]
        return [(start, start + self.window) for start in starts]


@dataclass(frozen=True)
class _Array:
    """An array input as checked at the call: its name, samples and rate in whole Hz."""

    source: str
    samples: np.ndarray
    rate: int


_Source: TypeAlias = str | _Array
"""A path to decode, or an array input already checked for shape, dtype and rate."""


def predict(
    inputs: Input | Sequence[Input],
    *,
    model: SERModel | InferenceModel | str | os.PathLike[str],
    batch_size: int = 8,
    window: float | None = None,
    hop: float | None = None,
    backend: str | None = None,
    precision: str | None = None,
) -> list[Prediction]:
    """Predict emotions for files or ``(samples, sample_rate)`` arrays, in input order.

    ``model`` is a loaded model, a saved model directory or a zoo name. ``batch_size`` counts
    segments (clips or windows). ``window``/``hop`` (seconds): by default a clip up to 30 s is
    predicted whole and a longer one in 10-s windows every 5 s; with ``window`` set, any clip
    longer than it is cut into such windows (``hop`` defaults to half a window).
    ``backend`` (``torch`` or ``onnxruntime``; by default what ``model`` is) and ``precision``
    (``fp32``, ``bf16``, ``int8``) choose how the model runs; see `peft_ser.backends`.
    Raises `InvalidRequestError` for a malformed call (see `iter_predictions`) and `AudioError`
    for the first input that cannot be predicted; `iter_predictions` skips those.
    """
    results = []
    for result in iter_predictions(
        inputs,
        model=model,
        batch_size=batch_size,
        window=window,
        hop=hop,
        backend=backend,
        precision=precision,
    ):
        if isinstance(result, Failure):
            raise result.error
        results.append(result)
    return results


def iter_predictions(
    inputs: Input | Sequence[Input],
    *,
    model: SERModel | InferenceModel | str | os.PathLike[str],
    batch_size: int = 8,
    window: float | None = None,
    hop: float | None = None,
    backend: str | None = None,
    precision: str | None = None,
) -> Iterator[Prediction | Failure]:
    """Like `predict`, but yields a `Failure` for an input that cannot be predicted and carries on.

    The call itself is checked first, before a named model is loaded or anything decoded: no
    inputs, an item that is neither a path nor a ``(samples, sample_rate)`` tuple, a rate that
    is not a positive whole number of Hz, samples that are not a 1-D or 2-D array of float or
    signed-integer PCM, or impossible settings raise `InvalidRequestError`. What only the data
    reveals is a `Failure` of that input, files and arrays alike: unreadable, empty, shorter
    than 25 ms, NaN or infinite samples, or a non-finite model output. Inputs are decoded a few
    batches at a time, so memory stays bounded on large folders.
    """
    if batch_size < 1:
        raise InvalidRequestError(f"batch_size must be at least 1, got {batch_size}")
    sources = _sources(inputs)
    loaded = inference_model(model, backend=backend, precision=precision)
    segmentation = _segmentation(loaded, window, hop)
    return _predictions(sources, loaded, segmentation, batch_size)


def _predictions(
    sources: list[_Source], model: InferenceModel, segmentation: _Segmentation, batch_size: int
) -> Iterator[Prediction | Failure]:
    chunk = batch_size * _CHUNK_BATCHES
    for first in range(0, len(sources), chunk):
        yield from _predict_chunk(sources[first : first + chunk], model, segmentation, batch_size)


def _sources(inputs: object) -> list[_Source]:
    """One input (a path or an array tuple) or a sequence of them, each checked."""
    if inputs is None:
        raise InvalidRequestError(f"inputs is None; {_EXPECTED_INPUTS}")
    if isinstance(inputs, (str, os.PathLike)) or _is_array_pair(inputs):
        items: list[object] = [inputs]
    elif isinstance(inputs, (list, tuple)):
        items = list(inputs)
    else:
        raise InvalidRequestError(f"inputs is {_described(inputs)}; {_EXPECTED_INPUTS}")
    if not items:
        raise InvalidRequestError(f"no inputs given; {_EXPECTED_INPUTS}")
    return [_source(item, index) for index, item in enumerate(items)]


def _is_array_pair(item: object) -> bool:
    """A two-item tuple whose first item is not a path: meant as ``(samples, sample_rate)``."""
    return (
        isinstance(item, tuple)
        and len(item) == 2
        and not isinstance(item[0], (str, os.PathLike, tuple))
    )


def _source(item: object, index: int) -> _Source:
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    if isinstance(item, tuple) and _is_array_pair(item):
        name = f"array[{index}]"
        return _Array(name, _samples(item[0], name), _sample_rate(item[1], name))
    raise InvalidRequestError(
        f"inputs[{index}]: expected a file path or a (samples, sample_rate) tuple, "
        f"got {_described(item)}"
    )


def _samples(value: object, name: str) -> np.ndarray:
    """``value`` as a 1-D or 2-D array of float or signed-integer PCM (unsigned PCM is offset)."""
    try:
        samples = np.asarray(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise InvalidRequestError(f"{name}: samples are not an array ({error})") from None
    if samples.ndim not in (1, 2):
        raise InvalidRequestError(
            f"{name}: samples must be shaped (T,), (T, C) or (C, T); got shape {samples.shape}"
        )
    if not (
        np.issubdtype(samples.dtype, np.floating) or np.issubdtype(samples.dtype, np.signedinteger)
    ):
        raise InvalidRequestError(
            f"{name}: samples must be float or signed-integer PCM; got dtype {samples.dtype}"
        )
    return samples


def _sample_rate(value: object, name: str) -> int:
    """A rate in Hz as an int: a positive whole number, given as an int or an integral float."""
    rate = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else 0.0
    if np.isfinite(rate) and rate > 0 and rate.is_integer():
        return int(rate)
    raise InvalidRequestError(
        f"{name}: sample rate must be a positive whole number of Hz, got {_described(value)}"
    )


def _described(value: object) -> str:
    """A short description for an error: the value if it is a scalar, else its type (and shape)."""
    if value is None or isinstance(value, (numbers.Number, str, np.generic)):
        return repr(value)
    shape = getattr(value, "shape", None)
    return type(value).__name__ + (f" of shape {tuple(shape)}" if shape is not None else "")


def _segmentation(model: InferenceModel, window: float | None, hop: float | None) -> _Segmentation:
    """Validate the window settings against the model and turn them into samples."""
    limit = model.max_samples
    window_seconds = DEFAULT_WINDOW_SECONDS if window is None else window
    hop_seconds = window_seconds / 2 if hop is None else hop
    if window_seconds <= 0 or not 0 < hop_seconds <= window_seconds:
        raise InvalidRequestError(
            f"need window > 0 and 0 < hop <= window; got window {window_seconds}, hop {hop_seconds}"
        )
    window_samples = round(window_seconds * SAMPLE_RATE)
    if limit is not None and window_samples > limit:
        raise InvalidRequestError(
            f"this model encodes at most {limit / SAMPLE_RATE:g} s; window is longer"
        )
    whole = round(WHOLE_CLIP_SECONDS * SAMPLE_RATE) if window is None else window_samples
    if limit is not None:
        whole = min(whole, limit)
    return _Segmentation(whole, window_samples, round(hop_seconds * SAMPLE_RATE))


def _predict_chunk(
    sources: list[_Source], model: InferenceModel, segmentation: _Segmentation, batch_size: int
) -> Iterator[Prediction | Failure]:
    loaded = [_load(source) for source in sources]
    clips = [clip for clip in loaded if not isinstance(clip, Failure)]
    spans = [segmentation.spans(len(samples)) for _, samples in clips]
    segments = [
        samples[start:end]
        for (_, samples), ranges in zip(clips, spans, strict=True)
        for start, end in ranges
    ]
    probabilities = iter(_classify(segments, model, batch_size))
    clip_spans = iter(zip(clips, spans, strict=True))
    for clip in loaded:
        if isinstance(clip, Failure):
            yield clip
            continue
        (source, samples), ranges = next(clip_spans)
        rows = np.stack([next(probabilities) for _ in ranges])
        if not np.isfinite(rows).all():
            problem = "model produced non-finite output (NaN or ±inf)"
            yield Failure(source, AudioError(source, problem, "non_finite_output"))
            continue
        yield _prediction(source, len(samples), ranges, rows, model.labels)


def _load(source: _Source) -> tuple[str, np.ndarray] | Failure:
    """16 kHz mono samples and a name for the input, or the reason it cannot be used."""
    if isinstance(source, str):
        name, decode = source, partial(load_audio, source)
    else:
        name, decode = source.source, partial(_array_to_16k, source)
    try:
        waveform = decode()
        if len(waveform) < MIN_SAMPLES:
            problem = f"too short to classify ({len(waveform)} samples at 16 kHz)"
            raise AudioError(name, problem, "empty")
    except AudioError as error:
        return Failure(name, error)
    return name, waveform


def _array_to_16k(array: _Array) -> np.ndarray:
    """Float samples at 16 kHz mono; channels lie on the shorter axis, integers are PCM.

    An empty array or one with NaN or infinite samples is refused like an unreadable file.
    """
    samples = array.samples
    if samples.size == 0:
        raise AudioError(array.source, "no samples (empty array)", "empty")
    non_finite = samples.size - int(np.isfinite(samples).sum())
    if non_finite:
        problem = f"{non_finite} of {samples.size} samples are not finite (NaN or ±inf)"
        raise AudioError(array.source, problem, "non_finite")
    if samples.ndim == 2 and samples.shape[0] < samples.shape[1]:
        samples = samples.T
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples / float(2 ** (8 * samples.dtype.itemsize - 1))
    return to_mono_16k(samples.astype(np.float32), array.rate, SAMPLE_RATE)


def _classify(segments: list[np.ndarray], model: InferenceModel, batch_size: int) -> np.ndarray:
    """Class probabilities ``[N, C]`` in the segments' order, computed longest-first in batches."""
    probabilities = np.empty((len(segments), len(model.labels)), dtype=np.float64)
    order = sorted(range(len(segments)), key=lambda i: len(segments[i]), reverse=True)
    for first in range(0, len(order), batch_size):
        batch = order[first : first + batch_size]
        logits = torch.from_numpy(model.forward(*_pad([segments[i] for i in batch])))
        probabilities[batch] = torch.softmax(logits.float(), dim=-1).numpy()
    return probabilities


def _pad(segments: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-padded ``[B, T]`` waveforms and their lengths in samples."""
    lengths = torch.tensor([len(segment) for segment in segments])
    waveforms = torch.zeros(len(segments), int(lengths.max()))
    for row, segment in enumerate(segments):
        waveforms[row, : len(segment)] = torch.from_numpy(segment)
    return waveforms, lengths


def _prediction(
    source: str,
    num_samples: int,
    spans: list[tuple[int, int]],
    probabilities: np.ndarray,
    labels: list[str],
) -> Prediction:
    """One input's answer from its segments' probabilities (one row per span)."""
    duration = num_samples / SAMPLE_RATE
    summary = probabilities.mean(axis=0)
    if len(spans) == 1:
        return Prediction(source, duration, *_labelled(summary, labels))
    windows = [
        WindowPrediction(start / SAMPLE_RATE, end / SAMPLE_RATE, *_labelled(row, labels))
        for (start, end), row in zip(spans, probabilities, strict=True)
    ]
    return Prediction(source, duration, *_labelled(summary, labels), windows)


def _labelled(row: np.ndarray, labels: list[str]) -> tuple[str, dict[str, float]]:
    return labels[int(np.argmax(row))], {
        label: float(p) for label, p in zip(labels, row, strict=True)
    }
