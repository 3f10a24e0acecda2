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

import csv
import glob
import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeAlias, TypeGuard

import numpy as np
import torch

from .audio import SAMPLE_RATE, AudioError, load_audio, to_mono_16k
from .model import SERModel, build_model

WHOLE_CLIP_SECONDS = 30.0
"""By default a clip up to this long is predicted whole (Whisper's window: its encoder limit)."""
DEFAULT_WINDOW_SECONDS = 10.0
"""Window length for longer recordings when none is given; the hop defaults to half a window."""
MIN_SAMPLES = 400
"""25 ms: one analysis frame of every backbone's front end; shorter clips cannot be classified."""
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".mp3"})
"""Files a directory search picks up (case-insensitive)."""
_CHUNK_BATCHES = 8
"""Inputs are decoded this many batches at a time, so a large folder never sits in memory."""

ArrayInput: TypeAlias = tuple[Any, int]
"""``(samples, sample_rate)``: samples ``(T,)``, ``(T, C)`` or ``(C, T)``, float or integer PCM."""
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
    """The answer for one input.

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
    """An input that could not be predicted; ``error`` names the input and the problem."""

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


def load_model(name_or_path: str | os.PathLike[str], device: str | None = None) -> SERModel:
    """A model in eval mode from a directory written by `SERModel.save` or a model-zoo name.

    ``device`` defaults to CUDA when available, else the CPU.
    """
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if Path(name_or_path).is_dir():
        return SERModel.load(name_or_path, map_location=target)
    return _load_zoo_model(os.fspath(name_or_path)).to(target).eval()


def _load_zoo_model(name: str) -> SERModel:
    """A released model by name, downloaded on first use and converted to this package's names.

    The zoo (download and conversion code) is imported only when a name is asked for.
    """
    from . import zoo

    if name not in zoo.ZOO:
        raise ValueError(
            f"unknown model name {name!r}; known: {', '.join(sorted(zoo.ZOO))} "
            "(or give a directory written by SERModel.save)"
        )
    model = build_model(zoo.ZOO[name].config)
    model.load_trainable_state_dict(zoo.load_zoo_state(name))
    return model


def predict(
    inputs: Input | Sequence[Input],
    *,
    model: SERModel | str | os.PathLike[str],
    batch_size: int = 8,
    window: float | None = None,
    hop: float | None = None,
) -> list[Prediction]:
    """Predict emotions for files or ``(samples, sample_rate)`` arrays, in input order.

    ``model`` is a loaded model, a saved model directory or a zoo name. ``batch_size`` counts
    segments (clips or windows). ``window``/``hop`` (seconds): by default a clip up to 30 s is
    predicted whole and a longer one in 10-s windows every 5 s; with ``window`` set, any clip
    longer than it is cut into such windows (``hop`` defaults to half a window).
    Raises `AudioError` for the first input that cannot be read; `iter_predictions` skips them.
    """
    results = []
    for result in iter_predictions(
        inputs, model=model, batch_size=batch_size, window=window, hop=hop
    ):
        if isinstance(result, Failure):
            raise result.error
        results.append(result)
    return results


def iter_predictions(
    inputs: Input | Sequence[Input],
    *,
    model: SERModel | str | os.PathLike[str],
    batch_size: int = 8,
    window: float | None = None,
    hop: float | None = None,
) -> Iterator[Prediction | Failure]:
    """Like `predict`, but yields a `Failure` for an unreadable input and carries on.

    Settings are checked (and a named model loaded) at the call, before anything is decoded;
    inputs are then decoded a few batches at a time, so memory stays bounded on large folders.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    loaded = model if isinstance(model, SERModel) else load_model(model)
    segmentation = _segmentation(loaded, window, hop)
    return _predictions(_as_list(inputs), loaded, segmentation, batch_size)


def _predictions(
    items: list[Input], model: SERModel, segmentation: _Segmentation, batch_size: int
) -> Iterator[Prediction | Failure]:
    chunk = batch_size * _CHUNK_BATCHES
    for first in range(0, len(items), chunk):
        indexed = list(enumerate(items[first : first + chunk], start=first))
        yield from _predict_chunk(indexed, model, segmentation, batch_size)


def _as_list(inputs: Input | Sequence[Input]) -> list[Input]:
    """One input (a path or an array tuple) or a sequence of them."""
    if isinstance(inputs, (str, os.PathLike)) or _is_array_input(inputs):
        return [inputs]  # type: ignore[list-item]
    return list(inputs)  # type: ignore[arg-type]


def _is_array_input(item: object) -> TypeGuard[ArrayInput]:
    return (
        isinstance(item, tuple)
        and len(item) == 2
        and not isinstance(item[0], (str, os.PathLike))
        and isinstance(item[1], (int, np.integer))
    )


def _segmentation(model: SERModel, window: float | None, hop: float | None) -> _Segmentation:
    """Validate the window settings against the model and turn them into samples."""
    limit = getattr(model.backbone, "max_samples", None)
    window_seconds = DEFAULT_WINDOW_SECONDS if window is None else window
    hop_seconds = window_seconds / 2 if hop is None else hop
    if window_seconds <= 0 or not 0 < hop_seconds <= window_seconds:
        raise ValueError(
            f"need window > 0 and 0 < hop <= window; got window {window_seconds}, hop {hop_seconds}"
        )
    window_samples = round(window_seconds * SAMPLE_RATE)
    if limit is not None and window_samples > limit:
        raise ValueError(f"this model encodes at most {limit / SAMPLE_RATE:g} s; window is longer")
    whole = round(WHOLE_CLIP_SECONDS * SAMPLE_RATE) if window is None else window_samples
    if limit is not None:
        whole = min(whole, limit)
    return _Segmentation(whole, window_samples, round(hop_seconds * SAMPLE_RATE))


@contextmanager
def _evaluating(model: SERModel) -> Iterator[None]:
    """Eval mode (no dropout) while predicting, restoring the caller's mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _predict_chunk(
    indexed: list[tuple[int, Input]],
    model: SERModel,
    segmentation: _Segmentation,
    batch_size: int,
) -> Iterator[Prediction | Failure]:
    loaded = [_load(item, index) for index, item in indexed]
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
        yield _prediction(source, len(samples), ranges, rows, model.labels)


def _load(item: Input, index: int) -> tuple[str, np.ndarray] | Failure:
    """16 kHz mono samples and a name for the input, or the reason it cannot be used."""
    if isinstance(item, (str, os.PathLike)):
        source = os.fspath(item)
        decode = partial(load_audio, source)
    elif _is_array_input(item):
        source = f"array[{index}]"
        decode = partial(_array_to_16k, np.asarray(item[0]), int(item[1]))
    else:
        raise TypeError(
            f"inputs are paths or (samples, sample_rate) tuples; got {type(item).__name__}"
        )
    try:
        waveform = decode()
        if len(waveform) < MIN_SAMPLES:
            problem = f"too short to classify ({len(waveform)} samples at 16 kHz)"
            raise AudioError(source, problem, "empty")
    except AudioError as error:
        return Failure(source, error)
    return source, waveform


def _array_to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Float samples at 16 kHz mono; channels lie on the shorter axis, integers are PCM."""
    if samples.ndim not in (1, 2):
        raise ValueError(f"audio arrays are (T,), (T, C) or (C, T); got shape {samples.shape}")
    if samples.ndim == 2 and samples.shape[0] < samples.shape[1]:
        samples = samples.T
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples / float(2 ** (8 * samples.dtype.itemsize - 1))
    return to_mono_16k(samples.astype(np.float32), rate, SAMPLE_RATE)


def _classify(segments: list[np.ndarray], model: SERModel, batch_size: int) -> np.ndarray:
    """Class probabilities ``[N, C]`` in the segments' order, computed longest-first in batches."""
    probabilities = np.empty((len(segments), len(model.labels)), dtype=np.float64)
    order = sorted(range(len(segments)), key=lambda i: len(segments[i]), reverse=True)
    device = next(model.parameters()).device
    with _evaluating(model):
        for first in range(0, len(order), batch_size):
            batch = order[first : first + batch_size]
            waveforms, lengths = _pad([segments[i] for i in batch])
            logits = model(waveforms.to(device), lengths.to(device))
            probabilities[batch] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
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


def find_audio_inputs(arguments: Iterable[str]) -> list[str]:
    """Expand command-line arguments into input paths, in order, without duplicates.

    A directory yields its audio files (recursively, sorted); a glob pattern its matches. A path
    that matches nothing is kept, so reading it reports the problem instead of hiding it.
    """
    found: dict[str, None] = {}
    for argument in arguments:
        matches = sorted(glob.glob(argument, recursive=True)) if glob.has_magic(argument) else []
        for path in matches or [argument]:
            for expanded in _audio_files(path) if os.path.isdir(path) else [path]:
                found.setdefault(expanded)
    return list(found)


def _audio_files(directory: str) -> list[str]:
    return sorted(
        str(path)
        for path in Path(directory).rglob("*")
        if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()
    )


def format_predictions(predictions: Sequence[Prediction], output_format: str) -> str:
    """Render predictions as ``table`` (aligned text), ``json`` or ``csv``.

    Table and CSV have one row per input (empty ``window`` column) followed, for windowed
    recordings, by one row per window numbered from 1.
    """
    if output_format == "json":
        return json.dumps([prediction.to_dict() for prediction in predictions], indent=2) + "\n"
    rows = _rows(predictions)
    if output_format == "csv":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return buffer.getvalue()
    if output_format == "table":
        return _table(rows)
    raise ValueError(f"unknown output format {output_format!r}; use table, json or csv")


def _rows(predictions: Sequence[Prediction]) -> list[list[str]]:
    """Header plus one row per input and per window: source, window, start, end, label, p…"""
    labels = list(predictions[0].probabilities) if predictions else []
    rows = [["source", "window", "start", "end", "label", *labels]]
    for prediction in predictions:
        rows.append(
            _row(prediction.source, "", 0.0, prediction.duration, prediction.label, prediction)
        )
        for number, window in enumerate(prediction.windows, start=1):
            rows.append(
                _row(prediction.source, str(number), window.start, window.end, window.label, window)
            )
    return rows


def _row(
    source: str,
    window: str,
    start: float,
    end: float,
    label: str,
    scored: Prediction | WindowPrediction,
) -> list[str]:
    scores = [f"{p:.4f}" for p in scored.probabilities.values()]
    return [source, window, f"{start:.2f}", f"{end:.2f}", label, *scores]


def _table(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; text left-aligned, numbers right-aligned."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if column in (0, 4) else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
