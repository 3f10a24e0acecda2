"""Property tests of the segment planner: whatever the options, a plan or one-line refusal.

Any valid options give spans that stay inside the recording, cover it (windows) and number at
most ``max_segments``; any other options raise `InvalidRequestError`, never another exception.
Times are in samples at 16 kHz.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from peft_ser.data.frames import MIN_HOP_SAMPLES, MIN_SAMPLES
from peft_ser.inference.segments import (
    MAX_OVERLAP,
    SEGMENT_MODES,
    Segmentation,
    SegmentPlan,
    segment_plan,
)
from peft_ser.utils.errors import InvalidRequestError

S = 16000
LIMIT = 30 * S

anything = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.booleans(),
    st.text(max_size=4),
    st.lists(st.floats(), max_size=2),
)
"""What a caller might pass for a number: NaN, infinities, huge, negative, wrong types."""


def _plan_or_refusal(mode: Any, limit: int | None, **options: Any) -> SegmentPlan | None:
    """The plan, or None when refused in one line; any other exception fails the test."""
    try:
        return segment_plan(mode, limit=limit, **options)
    except InvalidRequestError as error:
        assert "\n" not in str(error) and str(error)
        return None


@settings(max_examples=300, deadline=None)
@given(
    mode=st.one_of(st.sampled_from(SEGMENT_MODES), st.text(max_size=6), st.integers()),
    window=anything,
    hop=anything,
    min_segment=anything,
    max_segment=anything,
    max_segments=st.one_of(st.integers(min_value=-5, max_value=10**6), anything),
    limit=st.sampled_from([None, LIMIT, 8 * S]),
)
def test_any_options_give_a_plan_or_a_one_line_refusal(**options: Any) -> None:
    mode = options.pop("mode")
    limit = options.pop("limit")
    plan = _plan_or_refusal(mode, limit, **options)
    if plan is not None:
        assert plan.window >= MIN_SAMPLES and plan.hop >= MIN_HOP_SAMPLES
        assert plan.hop <= plan.window <= plan.hop * MAX_OVERLAP + 1
        assert MIN_SAMPLES <= plan.min_length <= plan.max_length
        if limit is not None and mode == "window":
            assert plan.whole <= limit and plan.window <= limit


@settings(max_examples=300, deadline=None)
@given(
    window=st.floats(min_value=0.025, max_value=30.0),
    hop_share=st.floats(min_value=1 / MAX_OVERLAP, max_value=1.0),
    max_segments=st.integers(min_value=1, max_value=5000),
    num_samples=st.integers(min_value=MIN_SAMPLES, max_value=3600 * S),
)
def test_windows_cover_the_recording_within_the_cap(
    window: float, hop_share: float, max_segments: int, num_samples: int
) -> None:
    hop = max(window * hop_share, MIN_HOP_SAMPLES / S)
    if hop > window or hop * MAX_OVERLAP < window:
        return  # rounding at the edge of the valid range
    plan = segment_plan("window", window=window, hop=hop, limit=LIMIT, max_segments=max_segments)
    try:
        spans = plan.spans(num_samples)
    except InvalidRequestError as error:
        expected = len(range(0, num_samples - plan.window, plan.hop)) + 1
        assert expected > max_segments
        assert f"would be cut into {expected} segments" in str(error)
        return
    assert 1 <= len(spans) <= max_segments
    assert spans[0][0] == 0 and spans[-1][1] == num_samples
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        assert next_start <= end  # no sample left out
    assert all(0 <= start < end <= num_samples for start, end in spans)
    assert all(end - start <= max(plan.whole, plan.window) for start, end in spans)


@st.composite
def speech_regions(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    """A recording's length and sorted, non-overlapping speech regions in it."""
    gaps_and_lengths = draw(
        st.lists(st.tuples(st.integers(0, 3 * S), st.integers(MIN_SAMPLES, 40 * S)), max_size=30)
    )
    regions, position = [], 0
    for gap, length in gaps_and_lengths:
        start = position + gap
        regions.append((start, start + length))
        position = start + length
    return position + draw(st.integers(0, 5 * S)) + MIN_SAMPLES, regions


@settings(max_examples=200, deadline=None)
@given(
    recording=speech_regions(),
    min_segment=st.floats(min_value=0.025, max_value=5.0),
    max_segment=st.floats(min_value=0.5, max_value=30.0),
    max_segments=st.integers(min_value=1, max_value=200),
)
def test_speech_segments_stay_in_bounds_within_the_cap(
    recording: tuple[int, list[tuple[int, int]]],
    min_segment: float,
    max_segment: float,
    max_segments: int,
) -> None:
    pytest.importorskip("silero_vad")
    num_samples, regions = recording
    plan = _plan_or_refusal(
        "vad",
        LIMIT,
        min_segment=min_segment,
        max_segment=max_segment,
        max_segments=max_segments,
    )
    if plan is None:
        assert min_segment > max_segment
        return
    try:
        spans = plan.spans(num_samples, regions)
    except InvalidRequestError as error:
        assert "max_segments" in str(error)
        return
    assert len(spans) <= max_segments
    assert all(0 <= start < end <= num_samples for start, end in spans)
    assert all(end - start <= plan.max_length for start, end in spans)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


@settings(max_examples=200, deadline=None)
@given(window=anything, hop=anything, max_segments=anything)
def test_a_segmentation_exists_only_with_settings_that_work(
    window: Any, hop: Any, max_segments: Any
) -> None:
    options = {"window": window, "hop": hop}
    if max_segments is not None:
        options["max_segments"] = max_segments
    try:
        made = Segmentation("window", **options)
    except InvalidRequestError:
        return
    assert made.plan().hop >= MIN_HOP_SAMPLES
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in (window, hop))
