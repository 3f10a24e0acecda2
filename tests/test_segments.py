"""Segment planning on constructed timestamps, streamed decoding and cutting, without models.

Times are in samples at 16 kHz (``S`` samples per second) so every expected span is exact.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from peft_ser.data.audio import AudioError, load_audio, stream_audio
from peft_ser.data.frames import MIN_SAMPLES
from peft_ser.inference.predict import InvalidRequestError
from peft_ser.inference.recordings import Recording, Scored, cut_spans, score_recordings
from peft_ser.inference.segments import (
    Segmentation,
    merge_short,
    segment_plan,
    speech_segments,
    split_evenly,
    widen_short,
    window_spans,
)

S = 16000


def test_split_evenly_cuts_into_the_fewest_equal_parts() -> None:
    assert split_evenly((0, 10 * S), 10 * S) == [(0, 10 * S)]
    third = 25 * S / 3
    assert split_evenly((S, 26 * S), 10 * S) == [
        (S, S + round(third)),
        (S + round(third), S + round(2 * third)),
        (S + round(2 * third), 26 * S),
    ]
    parts = split_evenly((3, 3 + 20 * S + 1), 10 * S)
    assert len(parts) == 3 and all(end - start <= 10 * S for start, end in parts)
    assert parts[0][0] == 3 and parts[-1][1] == 3 + 20 * S + 1


def test_short_segments_join_a_neighbour_across_short_pauses_only() -> None:
    # 0.5-s word, 0.4-s pause, 3-s sentence: joined. Then a 2-s pause: not joined.
    spans = [(0, S // 2), (S * 9 // 10, S * 39 // 10), (S * 59 // 10, S * 63 // 10)]
    merged = merge_short(spans, min_length=S, max_length=10 * S, gap=S)
    assert merged == [(0, S * 39 // 10), (S * 59 // 10, S * 63 // 10)]
    # a short one after a long one joins the one before it
    assert merge_short([(0, 3 * S), (3 * S + 100, 3 * S + 5000)], S, 10 * S, S) == [
        (0, 3 * S + 5000)
    ]
    # never beyond the maximum
    long = 98 * S // 10
    assert merge_short([(0, long), (long + 10, long + 8000)], S, 10 * S, S) == [
        (0, long),
        (long + 10, long + 8000),
    ]
    # two long segments stay apart, however short the pause
    assert merge_short([(0, 2 * S), (2 * S + 1, 4 * S)], S, 10 * S, S) == [
        (0, 2 * S),
        (2 * S + 1, 4 * S),
    ]


def test_widening_stays_centred_inside_the_free_room() -> None:
    # a 0.4-s segment in the open is widened to 1 s around its centre
    assert widen_short([(5 * S, 5 * S + 6400)], 20 * S, S) == [
        (5 * S + 3200 - 8000, 5 * S + 3200 + 8000)
    ]
    # at the recording's start it extends to the right only
    assert widen_short([(100, 4100)], 20 * S, S) == [(0, S)]
    # at the end, to the left
    assert widen_short([(20 * S - 4000, 20 * S)], 20 * S, S) == [(19 * S, 20 * S)]
    # squeezed between neighbours it takes the room there is, without overlapping them
    spans = [(0, 2 * S), (2 * S + 1000, 2 * S + 5000), (2 * S + 9000, 5 * S)]
    assert widen_short(spans, 20 * S, S) == [
        (0, 2 * S),
        (2 * S, 2 * S + 9000),
        (2 * S + 9000, 5 * S),
    ]
    # a recording shorter than the minimum: the whole recording
    assert widen_short([(1000, 5000)], 8000, S) == [(0, 8000)]


def test_speech_segments_split_then_merge_then_widen() -> None:
    regions = [(S, 26 * S), (26 * S + S // 2, 27 * S), (40 * S, 40 * S + S // 4)]
    segments = speech_segments(regions, 60 * S, min_length=S, max_length=10 * S)
    cuts = [S + round(k * 25 * S / 3) for k in (1, 2)]
    assert segments[:2] == [(S, cuts[0]), (cuts[0], cuts[1])]
    assert segments[2] == (cuts[1], 27 * S)  # the last third absorbed the 0.5-s word
    assert segments[3] == (40 * S + S // 8 - S // 2, 40 * S + S // 8 + S // 2)  # widened to 1 s
    assert len(segments) == 4
    assert all(S <= end - start <= 10 * S for start, end in segments)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(segments))
    assert speech_segments([], 60 * S, S, 10 * S) == []


def test_window_spans_keep_the_documented_layout() -> None:
    assert window_spans(29 * S, 30 * S, 10 * S, 5 * S) == [(0, 29 * S)]
    assert [start // S for start, _ in window_spans(45 * S, 30 * S, 10 * S, 5 * S)] == [
        0,
        5,
        10,
        15,
        20,
        25,
        30,
        35,
    ]
    assert [start // S for start, _ in window_spans(41 * S, 30 * S, 10 * S, 5 * S)] == [
        0,
        5,
        10,
        15,
        20,
        25,
        30,
        31,
    ]


@pytest.mark.parametrize(
    ("mode", "settings", "message"),
    [
        ("vads", {}, "unknown segment mode 'vads'; use whole, window, vad"),
        ("vad", {"window": 5.0}, "window applies to segment='window' only; got segment='vad'"),
        ("whole", {"hop": 1.0}, "hop applies to segment='window' only; got segment='whole'"),
        ("window", {"min_segment": 1.0}, "min_segment applies to segment='vad' only"),
        ("vad", {"min_segment": 0.0}, "need 0 < min_segment <= max_segment; got min_segment 0.0"),
        ("vad", {"min_segment": 3.0, "max_segment": 2.0}, "got min_segment 3.0, max_segment 2.0"),
        ("vad", {"min_segment": float("nan")}, "min_segment must be a finite number of seconds"),
        ("vad", {"min_segment": 0.01}, "min_segment must be at least 0.025 s (one analysis"),
        ("vad", {"max_segment": 0.3}, "max_segment must be at least 0.5 s; got 0.3"),
        ("vad", {"max_segment": float("inf")}, "max_segment must be a finite number of seconds"),
        ("vad", {"max_segment": 31.0}, "this model encodes at most 30 s; max_segment is longer"),
        ("window", {"window": 0.0}, "window must be above 0 seconds; got 0.0"),
        ("window", {"window": -1.0}, "window must be above 0 seconds; got -1.0"),
        ("window", {"window": 31.0}, "this model encodes at most 30 s; window is longer"),
        # far below one analysis frame: a traceback (or a hung server) before
        ("window", {"window": 0.00001}, "window must be at least 0.025 s (one analysis frame)"),
        ("window", {"window": 0.001}, "at least 0.025 s (one analysis frame); got 0.001"),
        ("window", {"window": 0.02}, "window must be at least 0.025 s (one analysis frame); got"),
        ("window", {"hop": 1e-7}, "hop must be at least 0.01 s (one frame step); got 1e-07"),
        ("window", {"window": 1.0, "hop": 0.001}, "hop must be at least 0.01 s"),
        ("window", {"window": 10.0, "hop": 0.1}, "hop must be at least window / 20"),
        ("window", {"window": 4.0, "hop": 5.0}, "need 0 < hop <= window; got window 4.0, hop 5.0"),
        ("window", {"window": float("inf")}, "window must be a finite number of seconds; got inf"),
        ("window", {"window": float("nan")}, "window must be a finite number of seconds; got nan"),
        ("window", {"hop": float("-inf")}, "hop must be a finite number of seconds; got -inf"),
        ("window", {"window": "5"}, "window must be a number of seconds; got '5'"),
        ("window", {"window": True}, "window must be a number of seconds; got True"),
        ("window", {"max_segments": 0}, "max_segments must be at least 1; got 0"),
        ("window", {"max_segments": 2.5}, "max_segments must be a whole number; got 2.5"),
    ],
)
def test_bad_settings_are_refused_in_one_line(
    mode: str, settings: dict[str, float], message: str
) -> None:
    with pytest.raises(
        InvalidRequestError, match=message.replace("(", r"\(").replace(")", r"\)")
    ) as caught:
        segment_plan(mode, limit=30 * S, **settings)
    assert "\n" not in str(caught.value)


def test_default_speech_bounds_follow_the_model_limit() -> None:
    plan = segment_plan("vad", limit=8 * S)
    assert (plan.min_length, plan.max_length) == (S, 8 * S)
    assert segment_plan("vad", max_segment=0.8).min_length == round(0.8 * S)


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (44100, 2), (8000, 1)])
def test_streamed_decoding_gives_load_audios_samples(
    tmp_path: Path, rate: int, channels: int
) -> None:
    samples = np.random.default_rng(rate).normal(0, 0.1, (rate * 3 + 77, channels))
    sf.write(tmp_path / "x.wav", samples, rate, subtype="FLOAT")
    streamed = np.concatenate(list(stream_audio(tmp_path / "x.wav", block_frames=5000)))
    np.testing.assert_array_equal(streamed, load_audio(tmp_path / "x.wav"))


def test_streamed_decoding_refuses_what_load_audio_refuses(tmp_path: Path) -> None:
    glitch = np.zeros(3 * S, dtype=np.float32)
    glitch[[10, 40000]] = np.nan
    sf.write(tmp_path / "nan.wav", glitch, S, subtype="FLOAT")
    (tmp_path / "empty.wav").write_bytes(b"")
    messages = []
    for name in ("nan.wav", "empty.wav"):
        with pytest.raises(AudioError) as whole:
            load_audio(tmp_path / name)
        with pytest.raises(AudioError) as streamed:
            list(stream_audio(tmp_path / name, block_frames=4096))
        assert str(streamed.value) == str(whole.value)
        assert streamed.value.kind == whole.value.kind
        messages.append(streamed.value.problem)
    assert messages == [
        "2 of 48000 samples are not finite (NaN or ±inf)",
        "file is empty (0 bytes)",
    ]


def test_cutting_from_a_stream_equals_slicing() -> None:
    signal = np.random.default_rng(0).normal(size=50_000).astype(np.float32)
    sizes = np.random.default_rng(1).integers(1, 3000, 100)
    bounds = np.cumsum([0, *sizes])
    blocks = [signal[a:b] for a, b in itertools.pairwise(bounds) if a < len(signal)]
    spans = [
        (0, 900),
        (500, 5000),
        (4000, 9000),
        (30_000, 30_001),
        (40_000, 49_000),
        (49_500, 50_000),
    ]
    cut = list(cut_spans(blocks, spans))
    assert len(cut) == len(spans)
    for (start, end), samples in zip(spans, cut, strict=True):
        np.testing.assert_array_equal(samples, signal[start:end])


def test_a_plan_counts_its_windows_before_listing_them() -> None:
    plan = segment_plan("window", window=0.025, hop=0.01, max_segments=10_000)
    with pytest.raises(InvalidRequestError) as caught:
        plan.spans(3600 * S)  # an hour in 10-ms steps: 360,000 windows, never listed
    assert str(caught.value) == (
        "would be cut into 359999 segments, more than the limit of 10000 (max_segments); "
        "use a longer window or hop, or raise max_segments"
    )
    assert len(plan.spans(S)) == 99


def test_a_recording_cut_into_too_many_segments_fails_alone() -> None:
    plan = segment_plan("window", window=1.0, hop=0.5, max_segments=5)
    recordings = [
        Recording("long", lambda: [np.zeros(10 * S, np.float32)]),
        Recording("short", lambda: [np.zeros(2 * S, np.float32)]),
    ]
    results = list(score_recordings(recordings, plan, lambda batch: np.ones((len(batch), 2)), 64))
    long, short = results
    assert isinstance(long, AudioError) and long.kind == "too_many_segments"
    assert str(long) == (
        "long: would be cut into 19 segments, more than the limit of 5 (max_segments); "
        "use a longer window or hop, or raise max_segments"
    )
    assert isinstance(short, Scored) and len(short.spans) == 3


def test_a_segmentation_is_checked_where_it_is_made() -> None:
    """The server makes one per request: a wrong one fails there, before any audio is read."""
    with pytest.raises(InvalidRequestError, match="window must be a finite number of seconds"):
        Segmentation("window", float("inf"))
    with pytest.raises(InvalidRequestError, match=r"at least 0\.025 s"):
        Segmentation("window", 0.02)
    assert Segmentation("window", 0.025, 0.01).plan().window == MIN_SAMPLES
