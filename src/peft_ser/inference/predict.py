"""Prediction on recordings: files or arrays at any rate and channel count, batched by length.

Every input is decoded, down-mixed and resampled to the models' 16 kHz mono, then cut into
segments (`.segments`): by default a clip up to the whole-clip limit is one segment and a
longer recording is cut into equal, overlapping windows; ``segment="vad"`` cuts it into speech
segments instead, and ``segment="whole"`` keeps it whole. Each segment is predicted on its own,
and the recording's answer is the duration-weighted mean of its segments' probabilities: emotion
changes over a long recording, and a model trained on utterances of a few seconds judges a few
seconds best. Files are streamed (`.recordings`), so an hour-long one never sits in
memory.

Segments of all inputs are sorted by length and batched with their ``lengths``. Sorting keeps
padding small; passing ``lengths`` keeps it harmless, since `SERModel` masks padded samples, so an
answer never depends on what it was batched with.
"""

from __future__ import annotations

import inspect
import numbers
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, ParamSpec, TypeAlias, TypeVar

import numpy as np

from peft_ser.data.audio import (
    MAX_RATE,
    MIN_RATE,
    SAMPLE_RATE,
    AudioError,
    stream_audio,
    to_mono_16k,
)
from peft_ser.inference.backends import InferenceModel, inference_model
from peft_ser.inference.loading import (
    InvalidRequestError,
    available_devices,
    load_model,
    resolve_device,
)
from peft_ser.inference.recordings import Recording, Scored, score_recordings
from peft_ser.inference.segments import DEFAULT_MAX_SEGMENTS, Segmentation, SegmentPlan
from peft_ser.utils.precision import resolve_dtype

if TYPE_CHECKING:
    from peft_ser.models.ser_model import SERModel

_CHUNK_BATCHES = 8
"""Segments wait in a pool of this many batches, sorted by length before batching (little
padding), so a large folder or a long recording never sits in memory."""
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
    """The answer for one segment of a recording (a window, or a speech segment);
    ``start``/``end`` in seconds."""

    start: float
    end: float
    label: str
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Prediction:
    """The answer for one input; every probability is finite.

    For a recording cut into windows or speech segments, ``windows`` holds each segment's answer
    in time order, and ``label`` and ``probabilities`` summarise the whole recording (the mean of
    the segments' probabilities, weighted by their durations); for a clip predicted whole,
    ``windows`` is empty. Speech segments are always listed, even one. A model trained on
    attributes adds ``attributes`` (arousal, valence, dominance on its corpus's scale; the
    duration-weighted mean over segments); one trained on attributes only has an empty ``label``
    and no probabilities.
    """

    source: str
    duration: float
    label: str
    probabilities: dict[str, float]
    windows: list[WindowPrediction] = field(default_factory=list)
    attributes: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Failure:
    """An input that could not be predicted; ``error`` names the input and the problem.

    ``error.kind`` says why: ``missing``, ``empty``, ``unreadable``, ``non_finite`` (NaN or
    infinite samples), ``non_finite_output`` (the model produced NaN or infinite scores),
    ``too_long`` (``segment="whole"`` beyond the model's limit), ``no_speech`` (``"vad"``
    found none) or ``too_many_segments`` (more than ``max_segments``).
    """

    source: str
    error: AudioError


@dataclass(frozen=True)
class _Array:
    """An array input as checked at the call: its name, samples and rate in whole Hz."""

    source: str
    samples: np.ndarray
    rate: int


_Source: TypeAlias = str | _Array
"""A path to decode, or an array input already checked for shape, dtype and rate."""


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _takes_arguments_of(
    source: Callable[_P, object],
) -> Callable[[Callable[..., _R]], Callable[_P, _R]]:
    """Declare that the decorated function takes ``source``'s arguments and passes them on:
    calls are type-checked against ``source``'s parameters, and `inspect.signature` (so `help`)
    shows them with the decorated function's return type."""

    def declared(target: Callable[..., _R]) -> Callable[_P, _R]:
        returns = inspect.signature(target).return_annotation
        signature = inspect.signature(source).replace(return_annotation=returns)
        target.__signature__ = signature  # type: ignore[attr-defined]
        return target

    return declared


def iter_predictions(
    inputs: Input | Sequence[Input],
    *,
    model: SERModel | InferenceModel | str | os.PathLike[str],
    batch_size: int = 8,
    window: float | None = None,
    hop: float | None = None,
    segment: str = "window",
    min_segment: float | None = None,
    max_segment: float | None = None,
    max_segments: int = DEFAULT_MAX_SEGMENTS,
    backend: str | None = None,
    precision: str | None = None,
) -> Iterator[Prediction | Failure]:
    """Like `predict`, but yields a `Failure` for an input that cannot be predicted and carries on.

    The call itself is checked first, before a named model is loaded or anything decoded: no
    inputs, an item that is neither a path nor a ``(samples, sample_rate)`` tuple, a rate that
    is not a positive whole number of Hz, samples that are not a 1-D or 2-D array of float or
    signed-integer PCM, or impossible settings raise `InvalidRequestError`. What only the data
    reveals is a `Failure` of that input, files and arrays alike: unreadable, empty, shorter
    than 25 ms, NaN or infinite samples, a non-finite model output, too long to keep whole,
    no speech found, or more than ``max_segments`` segments. Files are streamed and segments
    scored a few batches at a time, so memory stays bounded on large folders and long
    recordings.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise InvalidRequestError(f"batch_size must be a whole number, got {batch_size!r}")
    if batch_size < 1:
        raise InvalidRequestError(f"batch_size must be at least 1, got {batch_size}")
    sources = _sources(inputs)
    # checked here, before a named model is loaded
    segmentation = Segmentation(segment, window, hop, min_segment, max_segment, max_segments)
    loaded = inference_model(model, backend=backend, precision=precision)
    plan = segmentation.plan(limit=loaded.max_samples)
    return _predictions(sources, loaded, plan, batch_size)


@_takes_arguments_of(iter_predictions)
def predict(*args: Any, **kwargs: Any) -> list[Prediction]:
    """Predict emotions for files or ``(samples, sample_rate)`` arrays, in input order.

    Takes the arguments of `iter_predictions`, declared there once (`help` and type checkers
    show them here too).

    ``model`` is a loaded model, a saved model directory or a zoo name. ``batch_size`` counts
    segments (clips, windows or speech segments). ``segment`` is ``"window"``, ``"vad"`` or
    ``"whole"``. ``window``/``hop`` (seconds, ``"window"`` only): by default a clip up to 30 s
    is predicted whole and a longer one in 10-s windows every 5 s; with ``window`` set, any clip
    longer than it is cut into such windows (``hop`` defaults to half a window).
    ``min_segment``/``max_segment`` (seconds, ``"vad"`` only, default 1 and 10): the bounds
    speech regions are merged and split to. ``max_segments`` (default 10,000): the most
    segments one recording may be cut into; a recording that would give more fails.
    ``backend`` (``torch`` or ``onnxruntime``; by default what ``model`` is) and ``precision``
    (``fp32``, ``bf16``, ``int8``) choose how the model runs; see `peft_ser.inference.backends`.
    Raises `InvalidRequestError` for a malformed call (see `iter_predictions`) and `AudioError`
    for the first input that cannot be predicted; `iter_predictions` skips those.
    """
    results = []
    for result in iter_predictions(*args, **kwargs):
        if isinstance(result, Failure):
            raise result.error
        results.append(result)
    return results


def _predictions(
    sources: list[_Source], model: InferenceModel, plan: SegmentPlan, batch_size: int
) -> Iterator[Prediction | Failure]:
    recordings = [_recording(source) for source in sources]
    classify = partial(_classify, model=model, batch_size=batch_size)
    for result in score_recordings(recordings, plan, classify, batch_size * _CHUNK_BATCHES):
        if isinstance(result, AudioError):
            yield Failure(result.path, result)
        elif not np.isfinite(result.probabilities).all():
            problem = "model produced non-finite output (NaN or ±inf)"
            yield Failure(result.name, AudioError(result.name, problem, "non_finite_output"))
        else:
            yield _prediction(result, model, plan.lists_segments)


def _recording(source: _Source) -> Recording:
    """A file is streamed block by block; an array is converted once, when first read."""
    if isinstance(source, str):
        return Recording(source, partial(stream_audio, source))
    return Recording(source.source, lambda: [_array_to_16k(source)], in_memory=True)


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
    if not (np.isfinite(rate) and rate > 0 and rate.is_integer()):
        raise InvalidRequestError(
            f"{name}: sample rate must be a positive whole number of Hz, got {_described(value)}"
        )
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidRequestError(
            f"{name}: sample rate {int(rate)} Hz is outside {MIN_RATE}-{MAX_RATE} Hz"
        )
    return int(rate)


def _described(value: object) -> str:
    """A short description for an error: the value if it is a scalar, else its type (and shape)."""
    if value is None or isinstance(value, (numbers.Number, str, np.generic)):
        return repr(value)
    shape = getattr(value, "shape", None)
    return type(value).__name__ + (f" of shape {tuple(shape)}" if shape is not None else "")


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
    """Class probabilities ``[N, C]`` (then the attribute values, see `models.tasks`) in the
    segments' order, computed longest-first in batches."""
    classes = len(model.labels)
    outputs = np.empty((len(segments), classes + len(model.attributes)), dtype=np.float64)
    order = sorted(range(len(segments)), key=lambda i: len(segments[i]), reverse=True)
    for first in range(0, len(order), batch_size):
        batch = order[first : first + batch_size]
        rows = np.asarray(model.forward(*_pad([segments[i] for i in batch])), dtype=np.float64)
        if classes:  # a non-finite row stays non-finite: its input's Failure says so
            rows[:, :classes] = _softmax(rows[:, :classes])
        outputs[batch] = rows
    return outputs


def _softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities per row, as `torch.softmax` gives them: a row holding NaN or +inf (or only
    -inf) gives NaN, which `_predictions` reports as that input's `Failure`, so numpy's warning
    about it is not shown."""
    with np.errstate(invalid="ignore", over="ignore"):
        exponents = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return exponents / exponents.sum(axis=-1, keepdims=True)


def _pad(segments: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded ``[B, T]`` float32 waveforms and their lengths in samples."""
    lengths = np.array([len(segment) for segment in segments], dtype=np.int64)
    waveforms = np.zeros((len(segments), int(lengths.max())), dtype=np.float32)
    for row, segment in enumerate(segments):
        waveforms[row, : len(segment)] = segment
    return waveforms, lengths


def _prediction(scored: Scored, model: InferenceModel, list_one: bool) -> Prediction:
    """One input's answer from its segments' outputs (one row per span: class probabilities,
    then attribute values); a single segment is listed only when ``list_one`` (speech segments)."""
    duration = scored.num_samples / SAMPLE_RATE
    labels = model.labels
    classes = len(labels)
    lengths = np.array([end - start for start, end in scored.spans], dtype=np.float64)
    summary = lengths @ scored.probabilities / lengths.sum()
    attributes = (
        dict(zip(model.attributes, map(float, summary[classes:]), strict=True))
        if model.attributes
        else None
    )
    label, probabilities = _labelled(summary[:classes], labels)
    if len(scored.spans) == 1 and not list_one:
        return Prediction(scored.name, duration, label, probabilities, attributes=attributes)
    windows = [
        WindowPrediction(start / SAMPLE_RATE, end / SAMPLE_RATE, *_labelled(row[:classes], labels))
        for (start, end), row in zip(scored.spans, scored.probabilities, strict=True)
    ]
    return Prediction(scored.name, duration, label, probabilities, windows, attributes)


def _labelled(row: np.ndarray, labels: list[str]) -> tuple[str, dict[str, float]]:
    """The most probable label (empty without classes) and every label's probability."""
    label = labels[int(np.argmax(row))] if len(labels) else ""
    return label, {label: float(p) for label, p in zip(labels, row, strict=True)}
