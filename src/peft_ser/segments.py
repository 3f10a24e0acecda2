"""How a recording becomes the segments a model scores: whole, fixed windows, or speech segments.

Three modes, chosen per call:

* ``whole``: the recording is one segment, however long (a model with an encoder limit, such
  as Whisper's 30 s, cannot score a longer one: that recording fails as ``too_long``).
* ``window``: a recording up to the whole-clip limit is one segment, a longer one is cut into
  equal, overlapping windows (the default, and the behaviour before modes existed).
* ``vad``: a voice-activity detector finds the speech regions (`peft_ser.vad`), which are split
  and merged into segments between ``min_segment`` and ``max_segment`` seconds. A model trained
  on utterances of a few seconds judges a sentence best, and silence has no emotion to judge.

Everything here is pure arithmetic on sample indices at 16 kHz, so the rules are tested on
constructed timestamps without audio or models.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from .audio import SAMPLE_RATE
from .errors import InvalidRequestError

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
MIN_SAMPLES = 400
"""25 ms: one analysis frame of every backbone's front end; shorter clips cannot be classified."""

Span: TypeAlias = tuple[int, int]
"""``(start, end)`` in samples at 16 kHz, end exclusive."""


@dataclass(frozen=True)
class SegmentPlan:
    """Checked segmentation settings, in samples at 16 kHz.

    ``whole``: in ``window`` mode the longest clip kept whole; ``window``/``hop`` the windows
    beyond it; ``min_length``/``max_length`` the speech segments' bounds in ``vad`` mode;
    ``limit`` the longest segment the model encodes (None: no limit).
    """

    mode: str
    whole: int
    window: int
    hop: int
    min_length: int
    max_length: int
    limit: int | None

    def spans(self, num_samples: int, speech: Sequence[Span] = ()) -> list[Span]:
        """The segments of a recording of ``num_samples`` samples (``speech``: its VAD regions)."""
        if self.mode == "whole":
            return [(0, num_samples)]
        if self.mode == "window":
            return window_spans(num_samples, self.whole, self.window, self.hop)
        return speech_segments(speech, num_samples, self.min_length, self.max_length)

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
) -> SegmentPlan:
    """Check the settings of one call and turn them into samples.

    Settings of another mode are refused rather than ignored (``window`` with ``vad``, or
    ``min_segment`` with ``window``), so a typo in a mode never goes unnoticed. ``limit`` is
    the model's encoder limit in samples. Raises `InvalidRequestError`.
    """
    if mode not in SEGMENT_MODES:
        raise InvalidRequestError(f"unknown segment mode {mode!r}; use {', '.join(SEGMENT_MODES)}")
    _refuse_foreign(mode, window=window, hop=hop, min_segment=min_segment, max_segment=max_segment)
    if mode == "vad" and importlib.util.find_spec("silero_vad") is None:
        raise InvalidRequestError(
            "segment='vad' needs the silero-vad package: pip install 'peft-ser[vad]'"
        )
    window_seconds = DEFAULT_WINDOW_SECONDS if window is None else window
    hop_seconds = window_seconds / 2 if hop is None else hop
    if not window_seconds > 0 or not 0 < hop_seconds <= window_seconds:
        raise InvalidRequestError(
            f"need window > 0 and 0 < hop <= window; got window {window_seconds}, hop {hop_seconds}"
        )
    window_samples = _samples(window_seconds)
    if mode == "window" and limit is not None and window_samples > limit:
        raise InvalidRequestError(
            f"this model encodes at most {limit / SAMPLE_RATE:g} s; window is longer"
        )
    whole = _samples(WHOLE_CLIP_SECONDS) if window is None else window_samples
    if limit is not None:
        whole = min(whole, limit)
    min_length, max_length = _speech_bounds(min_segment, max_segment, limit)
    return SegmentPlan(
        mode, whole, window_samples, _samples(hop_seconds), min_length, max_length, limit
    )


@dataclass(frozen=True)
class Segmentation:
    """How one call cuts its recordings, as given: the segmentation options of
    `peft_ser.inference.iter_predictions`, with its defaults. Hashable, so the server groups
    requests by it."""

    segment: str = "window"
    window: float | None = None
    hop: float | None = None
    min_segment: float | None = None
    max_segment: float | None = None

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
        )


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
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        raise InvalidRequestError(
            f"need 0 < min_segment <= max_segment; got min_segment {low}, max_segment {high}"
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
