"""Long recordings: speech segments found where the speech is, per-segment answers, outputs,
timelines, and memory that does not grow with the recording's length.

The recordings are built with known speech: espeak-ng sentences between pauses, some holding a
tone (`write_long_recording`), so every expected start and end is known. Models are tiny
random-weight ones with a sharpened classifier (as in test_inference.py).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _models import build_tiny_model
from _tones import tone
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.data.audio import stream_audio
from peft_ser.demo.synthetic import espeak_available, write_long_recording
from peft_ser.inference.predict import Failure, Prediction, iter_predictions, predict
from peft_ser.inference.vad import (
    MIN_SILENCE_SECONDS,
    MIN_SPEECH_SECONDS,
    SPEECH_PAD_SECONDS,
    detect_speech,
)
from peft_ser.models.ser_model import SERModel

RATE = 16000
TOLERANCE = 0.25
"""Seconds between a known sentence boundary and the one found (Silero frames are 32 ms, and
regions are padded by 30 ms)."""

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


@pytest.fixture(scope="module")
def model() -> SERModel:
    return build_tiny_model(sharpen=30)


@pytest.fixture(scope="module")
def talk(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float]]]:
    """A 16-s recording of sentences, pauses and tones, and its known speech in seconds."""
    path = tmp_path_factory.mktemp("talk") / "talk.wav"
    return path, write_long_recording(path, 16)


def tones(seconds: float, rate: int) -> np.ndarray:
    """A 440-Hz tone sounding for the first 2.5 s of every 5 s."""
    sounding = tone(seconds, 0.2, rate=rate, amplitude=1.0, dtype=np.float64) > 0
    wave = tone(seconds, 440, rate=rate, amplitude=0.2, dtype=np.float64) * sounding
    return wave.astype(np.float32)


def assert_matches(found: list[tuple[float, float]], known: list[tuple[float, float]]) -> None:
    assert len(found) == len(known), (found, known)
    for (start, end), (known_start, known_end) in zip(found, known, strict=True):
        assert abs(start - known_start) <= TOLERANCE, (found, known)
        assert abs(end - known_end) <= TOLERANCE, (found, known)


@needs_espeak
def test_vad_finds_the_known_sentences_and_not_the_tones(talk) -> None:
    path, known = talk
    regions, num_samples = detect_speech(stream_audio(path, block_frames=3000))
    assert num_samples == sf.info(path).frames
    assert_matches([(start / RATE, end / RATE) for start, end in regions], known)


@needs_espeak
def test_streamed_detection_equals_silero_on_the_whole_recording(talk) -> None:
    from silero_vad import get_speech_timestamps

    from peft_ser.inference.vad import _silero

    path, _ = talk
    whole = torch.from_numpy(sf.read(path, dtype="float32")[0])
    expected = get_speech_timestamps(
        whole,
        _silero(),
        min_speech_duration_ms=round(MIN_SPEECH_SECONDS * 1000),
        min_silence_duration_ms=round(MIN_SILENCE_SECONDS * 1000),
        speech_pad_ms=round(SPEECH_PAD_SECONDS * 1000),
    )
    regions, _ = detect_speech(stream_audio(path, block_frames=7777))
    assert regions == [(item["start"], item["end"]) for item in expected]


def test_detection_leaves_the_callers_threads_alone() -> None:
    threads = torch.get_num_threads()
    detect_speech([np.zeros(RATE, dtype=np.float32)])
    assert torch.get_num_threads() == threads


@needs_espeak
def test_vad_predicts_each_sentence_with_its_times(talk, model: SERModel) -> None:
    path, known = talk
    [result] = predict(path, model=model, segment="vad")
    assert_matches([(w.start, w.end) for w in result.windows], known)
    rows = np.array([list(w.probabilities.values()) for w in result.windows])
    lengths = np.array([w.end - w.start for w in result.windows])
    summary = lengths @ rows / lengths.sum()
    np.testing.assert_allclose(list(result.probabilities.values()), summary, atol=1e-9)
    assert result.label == model.labels[int(summary.argmax())]
    assert result.duration == pytest.approx(sf.info(path).duration)
    # each segment is scored on its own samples, as if it were a clip of its own
    samples = sf.read(path, dtype="float32")[0]
    third = result.windows[2]
    clip = samples[round(third.start * RATE) : round(third.end * RATE)]
    [alone] = predict((clip, RATE), model=model)
    assert alone.probabilities == pytest.approx(third.probabilities, abs=1e-5)
    # a longer minimum widens each sentence's segment into its pauses, within the maximum
    [wide] = predict(path, model=model, segment="vad", min_segment=4.0, max_segment=8.0)
    spans = [(w.start, w.end) for w in wide.windows]
    assert all(end - start <= 8.0 + 1e-6 for start, end in spans)
    assert sum(end - start for start, end in spans) > sum(w.end - w.start for w in result.windows)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    for start, end in known:
        assert any(s - TOLERANCE <= start and end <= e + TOLERANCE for s, e in spans)


def test_window_mode_streams_files_with_unchanged_answers(model: SERModel, tmp_path: Path) -> None:
    t = np.arange(45 * 44100) / 44100
    signal = (0.3 * np.sin(2 * np.pi * 220 * t * (1 + 0.1 * np.sin(2 * np.pi * 0.3 * t)))).astype(
        np.float32
    )
    sf.write(tmp_path / "long.wav", signal, 44100, subtype="FLOAT")
    [from_file] = predict(tmp_path / "long.wav", model=model)
    [from_array] = predict((signal, 44100), model=model, segment="window")
    assert [w.start for w in from_file.windows] == [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0]
    assert [w.end for w in from_file.windows][-1] == 45.0
    for one, other in zip(from_file.windows, from_array.windows, strict=True):
        assert one.probabilities == pytest.approx(other.probabilities, abs=1e-6)
    mean = np.mean([list(w.probabilities.values()) for w in from_file.windows], axis=0)
    np.testing.assert_allclose(list(from_file.probabilities.values()), mean, atol=1e-9)


def test_whole_mode_keeps_the_clip_whole_and_refuses_beyond_the_limit(
    model: SERModel, tmp_path: Path
) -> None:
    clip = tones(20.0, RATE)
    [whole] = predict((clip, RATE), model=model, segment="whole")
    assert whole.windows == []
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(clip)), dim=-1)[0].numpy()
    np.testing.assert_allclose(list(whole.probabilities.values()), expected, atol=1e-5)
    sf.write(tmp_path / "long.wav", tones(31.0, RATE), RATE)
    [failure] = iter_predictions(tmp_path / "long.wav", model=model, segment="whole")
    assert isinstance(failure, Failure)
    assert failure.error.kind == "too_long"
    assert str(failure.error) == (
        f"{tmp_path / 'long.wav'}: 31.0 s is longer than this model encodes (30 s); "
        "use segment 'window' or 'vad'"
    )


def test_vad_without_speech_is_a_failure_of_that_input(model: SERModel) -> None:
    results = list(
        iter_predictions(
            [(tones(6.0, RATE), RATE), (tones(2.0, RATE), RATE)], model=model, segment="vad"
        )
    )
    assert [type(r).__name__ for r in results] == ["Failure", "Failure"]
    assert all(isinstance(r, Failure) and r.error.kind == "no_speech" for r in results)
    assert str(results[0].error) == "array[0]: no speech found by the voice-activity detector"  # type: ignore[union-attr]


@needs_espeak
def test_cli_writes_segment_rows_and_a_timeline(talk, model: SERModel, tmp_path: Path) -> None:
    path, known = talk
    saved = model.save(tmp_path / "model")
    plot = tmp_path / "timeline.png"
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "predict",
            str(path),
            "-m",
            str(saved),
            "--segment",
            "vad",
            "-f",
            "csv",
            "--plot",
            str(plot),
        ],
    )
    assert out.exit_code == 0, out.output
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0] == ["source", "window", "start", "end", "label", *model.labels]
    assert [row[1] for row in rows[1:]] == ["", *[str(n) for n in range(1, len(known) + 1)]]
    assert_matches([(float(row[2]), float(row[3])) for row in rows[2:]], known)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = (
        int.from_bytes(plot.read_bytes()[16 + 4 * i : 20 + 4 * i], "big") for i in (0, 1)
    )
    assert width > 500 and height > 200

    out = runner.invoke(
        app, ["predict", str(path), "-m", str(saved), "--segment", "vad", "-f", "json"]
    )
    [item] = json.loads(out.stdout)
    assert set(item) == {"source", "duration", "label", "probabilities", "windows", "attributes"}
    assert [set(w) for w in item["windows"]] == [{"start", "end", "label", "probabilities"}] * len(
        known
    )
    assert_matches([(w["start"], w["end"]) for w in item["windows"]], known)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--segment", "speech"), "error: unknown segment mode 'speech'; use whole, window, vad\n"),
        (
            ("--min-segment", "2"),
            "error: min_segment applies to segment='vad' only; got segment='window'\n",
        ),
        (
            ("--segment", "vad", "--max-segment", "0.2"),
            "error: max_segment must be at least 0.5 s; got 0.2\n",
        ),
        (
            ("--segment", "vad", "--min-segment", "-1"),
            "error: need 0 < min_segment <= max_segment; got min_segment -1.0, max_segment 10.0\n",
        ),
    ],
)
def test_cli_refuses_bad_segment_options_in_one_line(
    options: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    sf.write(tmp_path / "a.wav", tones(1.0, RATE), RATE)
    out = CliRunner().invoke(
        app, ["predict", str(tmp_path / "a.wav"), "-m", "no-such-model", *options]
    )
    assert out.exit_code == 2
    assert out.stderr == message


def test_cli_refuses_a_timeline_of_too_many_recordings(tmp_path: Path) -> None:
    for index in range(13):
        sf.write(tmp_path / f"{index:02d}.wav", tones(1.0, RATE), RATE)
    out = CliRunner().invoke(
        app, ["predict", str(tmp_path), "-m", "no-such-model", "--plot", str(tmp_path / "t.png")]
    )
    assert out.exit_code == 2
    assert out.stderr == (
        "error: a timeline shows at most 12 recordings; got 13 inputs (plot fewer at a time)\n"
    )


def test_timeline_of_a_whole_clip_and_windows(model: SERModel, tmp_path: Path) -> None:
    from peft_ser.inference.timeline import save_timeline

    results: list[Prediction] = predict(
        [(tones(3.0, RATE), RATE), (tones(40.0, RATE), RATE)], model=model
    )
    save_timeline(results, tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob(".t.png.*"))  # written atomically, nothing left behind


_MEMORY_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from peft_ser.data.audio import load_audio, stream_audio
    from peft_ser.inference.recordings import Recording, score_recordings
    from peft_ser.inference.segments import segment_plan

    def peak_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    def loudness(segments):  # touches every sample, as a model would
        rms = np.array([[float(np.sqrt(np.mean(s ** 2)))] for s in segments])
        return np.hstack([rms, 1 - rms])

    plan = segment_plan("window", window=10.0, hop=5.0)
    peaks = []
    for path in sys.argv[1:]:
        recording = Recording(path, lambda path=path: stream_audio(path))
        [scored] = score_recordings([recording], plan, loudness, pool_size=8)
        assert len(scored.spans) >= 11
        peaks.append(peak_mib())
    load_audio(sys.argv[-1])
    peaks.append(peak_mib())
    print(*peaks)
    """
)


@pytest.mark.slow  # two fresh processes stream minutes of audio
def test_memory_does_not_grow_with_the_recordings_length(tmp_path: Path) -> None:
    """1 and 4 minutes of 48-kHz stereo tones and silence, streamed one after the other in one
    process: the peak after the 4-minute file stays that of the 1-minute one, while decoding
    the 4-minute file whole (as before streaming) raises it by far more."""
    paths = []
    for minutes in (1, 4):
        path = tmp_path / f"{minutes}min.wav"
        with sf.SoundFile(path, "w", 48000, 2, "PCM_16") as handle:
            for _ in range(minutes * 6):
                block = tones(10.0, 48000)
                handle.write(np.stack([block, 0.5 * block], axis=1))
        paths.append(str(path))
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_CHILD, *paths], capture_output=True, text=True, check=True
    )
    short, long, whole = map(float, result.stdout.split())
    assert long - short < 16, (short, long)
    assert whole - long > 60, (long, whole)  # 4 min at 48 kHz stereo is 88 MiB as float32
