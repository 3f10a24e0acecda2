"""How a recording becomes the segments a model scores: whole, fixed windows, or speech segments.

Three modes, chosen per call:

* ``whole``: the recording is one segment, however long (a model with an encoder limit, such
  as Whisper's 30 s, cannot score a longer one: that recording fails as ``too_long``).
* ``window``: a recording up to the whole-clip limit is one segment, a longer one is cut into
  equal, overlapping windows (the default, and the behaviour before modes existed).
* ``vad``: a voice-activity detector finds the speech regions (`.vad`), which are split
  and merged into segments between ``min_segment`` and ``max_segment`` seconds. A model trained
  on utterances of a few seconds judges a sentence best, and silence has no emotion to judge.

Everything here is pure arithmetic on sample indices at 16 kHz, so the rules are tested on
constructed timestamps without audio or models.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from peft_ser.data.audio import SAMPLE_RATE
from peft_ser.data.frames import MIN_HOP_SAMPLES, MIN_SAMPLES
from peft_ser.utils.errors import InvalidRequestError

SEGMENT_MODES = ("whole", "window", "vad")
WHOLE_CLIP_SECONDS = 30.0
"""In ``window`` mode a clip up to this long is predicted whole (Whisper's encoder limit)."""
DEFAULT_WINDOW_SECONDS = 10.0
"""Window length for longer recordings when none is given; the hop defaults to half a window."""
DEFAULT_MIN_SEGMENT = 1.0
"""Seconds. A speech segment shorter than this joins a neighbour or is widened to it: a word or
two ("yes.") carries little the model can judge, and one second gives it some context."""
DEFAULT_MAX_SEGMENT = 10.0
"""Seconds. Longer speech is split at its longest pauses, or evenly where it has none: the
paper's corpora hold utterances of 2-10 s, and 10 s is also the default window."""
MERGE_GAP = 1.0
"""Seconds. A short segment joins a neighbour only across a pause up to this long; over a longer
silence the speaker has most likely moved on, and the silence would dilute the segment."""
MAX_OVERLAP = 20
"""``window / hop`` at most: every sample is scored in at most 20 windows. A finer hop repeats
nearly the same window, and multiplies the work of one recording without bound."""
DEFAULT_MAX_SEGMENTS = 10_000
"""Segments one recording may be cut into unless the caller allows more (``max_segments``): a
13.9-hour recording in the default 10-s windows every 5 s. The bound keeps one request from
occupying a server, or a call from running for days, on settings nobody meant."""


Span: TypeAlias = tuple[int, int]
"""``(start, end)`` in samples at 16 kHz, end exclusive."""


@dataclass(frozen=True)
class SegmentPlan:
    """Checked segmentation settings, in samples at 16 kHz.

    ``whole``: in ``window`` mode the longest clip kept whole; ``window``/``hop`` the windows
    beyond it; ``min_length``/``max_length`` the speech segments' bounds in ``vad`` mode;
    ``limit`` the longest segment the model encodes (None: no limit); ``max_segments`` the most
    segments one recording may be cut into.
    """

    mode: str
    whole: int
    window: int
    hop: int
    min_length: int
    max_length: int
    limit: int | None
    max_segments: int = DEFAULT_MAX_SEGMENTS

    def spans(self, num_samples: int, speech: Sequence[Span] = ()) -> list[Span]:
        """The segments of a recording of ``num_samples`` samples (``speech``: its VAD regions).

        Raises `InvalidRequestError` when they would be more than ``max_segments``; windows are
        counted before any is listed, so a refused plan costs nothing.
        """
        if self.mode == "whole":
            return [(0, num_samples)]
        if self.mode == "window":
            self._check_count(window_count(num_samples, self.whole, self.window, self.hop))
            return window_spans(num_samples, self.whole, self.window, self.hop)
        spans = speech_segments(speech, num_samples, self.min_length, self.max_length)
        self._check_count(len(spans))
        return spans

    def _check_count(self, count: int) -> None:
        if count > self.max_segments:
            raise InvalidRequestError(
                f"would be cut into {count} segments, more than the limit of "
                f"{self.max_segments} (max_segments); use a longer window or hop, or raise "
                "max_segments"
            )

    @property
    def lists_segments(self) -> bool:
        """Whether a one-segment answer still lists its segment: speech segments always do,
        since their times say where the speech is; a whole clip or window does not."""
        return self.mode == "vad"


def segment_plan(
    mode: str,
    *,
    window: float | None = None,
    hop: float | None = None,
    min_segment: float | None = None,
    max_segment: float | None = None,
    limit: int | None = None,
    max_segments: int = DEFAULT_MAX_SEGMENTS,
) -> SegmentPlan:
    """Check the settings of one call and turn them into samples: the one place the CLI, the
    Python API and the server check them.

    Every length is a finite number of seconds; a window at least 25 ms (one analysis frame,
    `MIN_SAMPLES`), a hop at least 10 ms (`MIN_HOP_SAMPLES`) and at least window /
    `MAX_OVERLAP`, at most the window. Settings of another mode are refused rather than
    ignored (``window`` with ``vad``, or ``min_segment`` with ``window``), so a typo in a mode
    never goes unnoticed. ``limit`` is the model's encoder limit in samples. Raises
    `InvalidRequestError` with a one-line message, and nothing else, whatever the values.
    """
    if not isinstance(mode, str) or mode not in SEGMENT_MODES:
        raise InvalidRequestError(f"unknown segment mode {mode!r}; use {', '.join(SEGMENT_MODES)}")
    given = {"window": window, "hop": hop, "min_segment": min_segment, "max_segment": max_segment}
    seconds = {name: _seconds(name, value) for name, value in given.items()}
    _refuse_foreign(mode, **seconds)
    if isinstance(max_segments, bool) or not isinstance(max_segments, numbers.Integral):
        raise InvalidRequestError(f"max_segments must be a whole number; got {max_segments!r}")
    if max_segments < 1:
        raise InvalidRequestError(f"max_segments must be at least 1; got {max_segments}")
    if mode == "vad" and importlib.util.find_spec("silero_vad") is None:
        raise InvalidRequestError(
            "segment='vad' needs the silero-vad package: pip install 'peft-ser[vad]'"
        )
    window_samples, hop_samples = _window_and_hop(seconds["window"], seconds["hop"])
    if mode == "window" and limit is not None and window_samples > limit:
        raise InvalidRequestError(
            f"this model encodes at most {limit / SAMPLE_RATE:g} s; window is longer"
        )
    whole = _samples(WHOLE_CLIP_SECONDS) if window is None else window_samples
    if limit is not None:
        whole = min(whole, limit)
    min_length, max_length = _speech_bounds(seconds["min_segment"], seconds["max_segment"], limit)
    return SegmentPlan(
        mode, whole, window_samples, hop_samples, min_length, max_length, limit, int(max_segments)
    )


@dataclass(frozen=True)
class Segmentation:
    """How one call cuts its recordings, as given: the segmentation options of
    `peft_ser.inference.predict.iter_predictions`, with its defaults. Hashable, so the server groups
    requests by it.

    Checked when made (`segment_plan`, without a model's limit): a `Segmentation` that exists
    holds settings that can work, and a wrong one raises `InvalidRequestError` where it is
    made, before any model is loaded or audio decoded.
    """

    segment: str = "window"
    window: float | None = None
    hop: float | None = None
    min_segment: float | None = None
    max_segment: float | None = None
    max_segments: int = DEFAULT_MAX_SEGMENTS

    def __post_init__(self) -> None:
        self.plan()

    def plan(self, limit: int | None = None) -> SegmentPlan:
        """These options checked (`segment_plan`) for a model encoding at most ``limit``
        samples (None: any model); raises `InvalidRequestError`."""
        return segment_plan(
            self.segment,
            window=self.window,
            hop=self.hop,
            min_segment=self.min_segment,
            max_segment=self.max_segment,
            limit=limit,
            max_segments=self.max_segments,
        )


def _seconds(name: str, value: object) -> float | None:
    """``value`` as seconds: None (the default), or a finite number (its range is checked
    with the settings it goes with)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidRequestError(f"{name} must be a number of seconds; got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds):
        raise InvalidRequestError(f"{name} must be a finite number of seconds; got {seconds}")
    return seconds


def _window_and_hop(window: float | None, hop: float | None) -> tuple[int, int]:
    """Window and hop in samples: each at least its floor, the hop at most the window and at
    least window / `MAX_OVERLAP`."""
    window_seconds = DEFAULT_WINDOW_SECONDS if window is None else window
    hop_seconds = window_seconds / 2 if hop is None else hop
    for name, value in (("window", window_seconds), ("hop", hop_seconds)):
        if value <= 0:
            raise InvalidRequestError(f"{name} must be above 0 seconds; got {value}")
    floor = MIN_SAMPLES / SAMPLE_RATE
    if window_seconds < floor:
        raise InvalidRequestError(
            f"window must be at least {floor:g} s (one analysis frame); got {window_seconds}"
        )
    hop_floor = MIN_HOP_SAMPLES / SAMPLE_RATE
    if hop_seconds < hop_floor:
        raise InvalidRequestError(
            f"hop must be at least {hop_floor:g} s (one frame step); got {hop_seconds}"
        )
    if hop_seconds > window_seconds:
        raise InvalidRequestError(
            f"need 0 < hop <= window; got window {window_seconds}, hop {hop_seconds}"
        )
    if hop_seconds * MAX_OVERLAP < window_seconds:
        raise InvalidRequestError(
            f"hop must be at least window / {MAX_OVERLAP} (each sample in at most "
            f"{MAX_OVERLAP} windows); got window {window_seconds}, hop {hop_seconds}"
        )
    return _samples(window_seconds), _samples(hop_seconds)


def _refuse_foreign(mode: str, **settings: float | None) -> None:
    """Refuse window settings outside ``window`` mode and segment bounds outside ``vad``."""
    owners = {"window": "window", "hop": "window", "min_segment": "vad", "max_segment": "vad"}
    for name, value in settings.items():
        if value is not None and owners[name] != mode:
            raise InvalidRequestError(
                f"{name} applies to segment={owners[name]!r} only; got segment={mode!r}"
            )


def _speech_bounds(
    min_segment: float | None, max_segment: float | None, limit: int | None
) -> tuple[int, int]:
    low = DEFAULT_MIN_SEGMENT if min_segment is None else min_segment
    high = DEFAULT_MAX_SEGMENT if max_segment is None else max_segment
    if max_segment is None and limit is not None:
        high = min(high, limit / SAMPLE_RATE)
    low = min(low, high) if min_segment is None else low
    if not 0 < low <= high:
        raise InvalidRequestError(
            f"need 0 < min_segment <= max_segment; got min_segment {low}, max_segment {high}"
        )
    if low < MIN_SAMPLES / SAMPLE_RATE:
        raise InvalidRequestError(
            f"min_segment must be at least {MIN_SAMPLES / SAMPLE_RATE:g} s (one analysis "
            f"frame); got {low}"
        )
    if high < 0.5:
        raise InvalidRequestError(f"max_segment must be at least 0.5 s; got {high}")
    if limit is not None and _samples(high) > limit:
        raise InvalidRequestError(
            f"this model encodes at most {limit / SAMPLE_RATE:g} s; max_segment is longer"
        )
    return _samples(low), _samples(high)


def _samples(seconds: float) -> int:
    return round(seconds * SAMPLE_RATE)


def window_count(num_samples: int, whole: int, window: int, hop: int) -> int:
    """How many spans `window_spans` gives, counted without listing them."""
    if num_samples <= whole:
        return 1
    return len(range(0, num_samples - window, hop)) + 1


def window_spans(num_samples: int, whole: int, window: int, hop: int) -> list[Span]:
    """One span up to ``whole`` samples; beyond, equal windows every ``hop`` samples, the last
    one aligned to the recording's end (so no sample is left out and none is padded)."""
    if num_samples <= whole:
        return [(0, num_samples)]
    starts = [*range(0, num_samples - window, hop), num_samples - window]
    return [(start, start + window) for start in starts]


def speech_segments(
    regions: Sequence[Span],
    num_samples: int,
    min_length: int,
    max_length: int,
    merge_gap: int = round(MERGE_GAP * SAMPLE_RATE),
) -> list[Span]:
    """Speech regions (sorted, not overlapping) as segments of ``min_length``-``max_length``.

    Three steps, in order: a region longer than ``max_length`` is split into equal parts; a
    segment shorter than ``min_length`` joins the next one (or the one before, when it comes
    after a longer one) if the pause between them is at most ``merge_gap`` and the joined
    segment stays within ``max_length``; a segment still shorter is widened to ``min_length``
    around its centre, into the silence beside it, never overlapping a neighbour or leaving the
    recording.
    """
    pieces = [piece for region in regions for piece in split_evenly(region, max_length)]
    return widen_short(
        merge_short(pieces, min_length, max_length, merge_gap), num_samples, min_length
    )


def split_evenly(span: Span, max_length: int) -> list[Span]:
    """``span`` cut into the fewest equal parts of at most ``max_length`` samples."""
    start, end = span
    parts = max(1, math.ceil((end - start) / max_length))
    bounds = [start + round(k * (end - start) / parts) for k in range(parts + 1)]
    return list(itertools.pairwise(bounds))


def merge_short(spans: Sequence[Span], min_length: int, max_length: int, gap: int) -> list[Span]:
    """Join each span shorter than ``min_length`` with its neighbour where the pause is at most
    ``gap`` and the result at most ``max_length`` (see `speech_segments`)."""
    merged: list[Span] = []
    for start, end in spans:
        if merged:
            first, last = merged[-1]
            short = last - first < min_length or end - start < min_length
            if short and start - last <= gap and end - first <= max_length:
                merged[-1] = (first, end)
                continue
        merged.append((start, end))
    return merged


def widen_short(spans: Sequence[Span], num_samples: int, min_length: int) -> list[Span]:
    """Widen each span shorter than ``min_length`` around its centre, within the free room
    between its neighbours and the recording's bounds."""
    widened: list[Span] = []
    for index, (start, end) in enumerate(spans):
        if end - start >= min_length:
            widened.append((start, end))
            continue
        low = widened[-1][1] if widened else 0
        high = spans[index + 1][0] if index + 1 < len(spans) else num_samples
        length = min(min_length, high - low)
        first = min(max((start + end) // 2 - length // 2, low), high - length)
        widened.append((first, first + length))
    return widened
