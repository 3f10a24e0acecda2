"""What `load_audio`, `probe` and `prepare` make of broken, odd and extreme audio files.

Every file is built here with soundfile and numpy (nothing binary is committed). Each case
states the exact outcome of both readers: the decoded shape (always float32 and finite), the
header `probe` reports, or the `AudioError` kind and problem, with the file named first.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _tones
import numpy as np
import pytest
import soundfile as sf

from peft_ser.corpora import prepare_corpus
from peft_ser.data.audio import AudioError, AudioInfo, load_audio, probe


@dataclass(frozen=True)
class Decoded:
    """`load_audio` returns ``(samples,)`` float32, every sample finite."""

    samples: int


@dataclass(frozen=True)
class Fails:
    """The reader raises `AudioError` of ``kind``; ``problem`` matches its whole problem."""

    kind: str
    problem: str


Build = Callable[[Path], Path]


def tone(frames: int, channels: int = 1, amplitude: float = 0.3) -> np.ndarray:
    """``(frames, channels)`` of a 440 Hz tone at 16 kHz, each channel a little quieter."""
    wave = _tones.tone(frames / 16000, 440, amplitude=amplitude, dtype=np.float64)
    return np.stack([wave * (1 - 0.1 * c) for c in range(channels)], axis=1)


def written(
    name: str,
    data: np.ndarray,
    rate: int = 16000,
    subtype: str | None = None,
) -> Build:
    def build(folder: Path) -> Path:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, data, rate, subtype=subtype)
        return path

    return build


def with_bad_samples(frames: int, positions: slice | list[int], value: float) -> np.ndarray:
    data = tone(frames)
    data[positions] = value
    return data


def raw_bytes(name: str, content: bytes) -> Build:
    def build(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(content)
        return path

    return build


def cut(name: str, subtype: str, keep: float) -> Build:
    """A file of 3 s of tone whose bytes end after ``keep`` of their length."""

    def build(folder: Path) -> Path:
        path = written(name, tone(48000), subtype=subtype)(folder)
        content = path.read_bytes()
        path.write_bytes(content[: int(len(content) * keep)])
        return path

    return build


def made(make: Callable[[Path], object], name: str) -> Build:
    def build(folder: Path) -> Path:
        path = folder / name
        make(path)
        return path

    return build


def random_bytes(size: int = 1000) -> bytes:
    return np.random.default_rng(0).bytes(size)


def long_recording() -> np.ndarray:
    """10 minutes: 599 s of digital silence, then 1 s of tone (the silence scan must reach it)."""
    data = np.zeros((600 * 16000, 1), dtype=np.float32)
    data[-16000:] = tone(16000)
    return data


NOT_FINITE = r"{} of {} samples are not finite \(NaN or ±inf\)"
UNREADABLE = r"unreadable or corrupt audio \(libsndfile: .+\)"

# name: (build, load_audio outcome, probe outcome)
CASES: dict[str, tuple[Build, Decoded | Fails, AudioInfo | Fails]] = {}
for subtype in ("FLOAT", "DOUBLE"):
    for bad, positions, value, count in [
        ("one-nan", [800], np.nan, 1),
        ("all-nan", slice(None), np.nan, 1600),
        ("pos-inf", [0], np.inf, 1),
        ("neg-inf", [1599], -np.inf, 1),
    ]:
        data = with_bad_samples(1600, positions, value)
        failure = Fails("non_finite", NOT_FINITE.format(count, 1600))
        CASES[f"{subtype}-{bad}"] = (written(f"{bad}.wav", data, subtype=subtype), failure, failure)
stereo_nan = tone(1600, channels=2)
stereo_nan[10, 1] = np.nan
late_nan = tone(40000)
late_nan[-1] = np.nan
silent_nan = np.zeros((1600, 1))
silent_nan[100] = np.nan
for name, data, count, total in [
    ("stereo-nan", stereo_nan, 1, 3200),
    ("nan-in-last-of-5-blocks", late_nan, 1, 40000),
    ("silence-with-a-nan", silent_nan, 1, 1600),
]:
    failure = Fails("non_finite", NOT_FINITE.format(count, total))
    CASES[name] = (written(f"{name}.wav", data, subtype="FLOAT"), failure, failure)
for name, value in [("flac-pos-inf", np.inf), ("flac-neg-inf", -np.inf)]:
    # FLAC and PCM store integers: libsndfile writes ±inf as full scale (and refuses to
    # write a NaN into FLAC), so these files are finite by construction
    data = with_bad_samples(1600, [5], value)
    CASES[name] = (written(f"{name}.flac", data), Decoded(1600), AudioInfo(16000, 1, 1600, False))
CASES["pcm16-inf"] = (
    written("pcm16-inf.wav", with_bad_samples(1600, [5], np.inf), subtype="PCM_16"),
    Decoded(1600),
    AudioInfo(16000, 1, 1600, False),
)
EMPTY = Fails("empty", r"file is empty \(0 bytes\)")
NO_FRAMES = Fails("empty", "no audio frames")
UNRECOGNISED = Fails(
    "unreadable", r"unreadable or corrupt audio \(libsndfile: Format not recognised\.\)"
)
CASES |= {
    "zero-bytes": (raw_bytes("zero.wav", b""), EMPTY, EMPTY),
    "header-only": (written("header.wav", np.zeros((0, 1))), NO_FRAMES, NO_FRAMES),
    # libsndfile trusts a WAV's data over its header: the frames present are the file
    "truncated-wav": (
        cut("cut.wav", "PCM_16", 0.5),
        Decoded(23989),
        AudioInfo(16000, 1, 23989, False),
    ),
    # a FLAC header keeps promising every frame; its end no longer decodes
    "truncated-flac": (
        cut("cut.flac", "PCM_16", 0.5),
        Fails("unreadable", r"decoding failed \(libsndfile: Error : flac decoder lost sync\.\)"),
        Fails(
            "unreadable",
            "truncated or corrupt: the header promises 48000 frames but the "
            "last one does not decode",
        ),
    ),
    "text-as-wav": (
        raw_bytes("notes.wav", b"not audio at all\n" * 20),
        UNRECOGNISED,
        UNRECOGNISED,
    ),
}
for suffix in ("wav", "flac", "ogg", "mp3"):
    failure = Fails("unreadable", UNREADABLE)
    CASES[f"random-bytes-{suffix}"] = (
        raw_bytes(f"random.{suffix}", random_bytes()),
        failure,
        failure,
    )
for rate in (8000, 11025, 22050, 44100, 48000, 96000):
    CASES[f"rate-{rate}"] = (
        written(f"r{rate}.wav", tone(rate), rate, subtype="PCM_16"),
        Decoded(16000),
        AudioInfo(rate, 1, rate, False),
    )
for channels in (1, 2, 6, 8):
    CASES[f"channels-{channels}"] = (
        written(f"c{channels}.wav", tone(1600, channels)),
        Decoded(1600),
        AudioInfo(16000, channels, 1600, False),
    )
for subtype in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"):
    CASES[f"subtype-{subtype}"] = (
        written(f"{subtype}.wav", tone(1600), subtype=subtype),
        Decoded(1600),
        AudioInfo(16000, 1, 1600, False),
    )
CASES |= {
    "one-sample": (written("one.wav", tone(2)[1:]), Decoded(1), AudioInfo(16000, 1, 1, False)),
    "ten-samples": (written("ten.wav", tone(10)), Decoded(10), AudioInfo(16000, 1, 10, False)),
    "one-sample-48k": (
        written("one48.wav", tone(2)[1:], 48000),
        Fails("empty", "too short: 1 frame at 48000 Hz give no sample at 16000 Hz"),
        AudioInfo(48000, 1, 1, False),
    ),
    "ten-minutes": (
        written("long.flac", long_recording()),
        Decoded(9_600_000),
        AudioInfo(16000, 1, 9_600_000, False),
    ),
    "silent": (
        written("quiet.wav", tone(1600, amplitude=1e-4)),
        Decoded(1600),
        AudioInfo(16000, 1, 1600, True),
    ),
}
for label, name in [
    ("space", "with space.wav"),
    ("unicode", "ünïcødé 情感.wav"),
    ("leading-dash", "-rf.wav"),
    ("hash", "take#2.wav"),
    ("long-name", "x" * 200 + ".wav"),
]:
    CASES[f"name-{label}"] = (
        written(name, tone(1600)),
        Decoded(1600),
        AudioInfo(16000, 1, 1600, False),
    )
CASES |= {
    "directory-named-wav": (
        made(lambda path: path.mkdir(), "x.wav"),
        Fails("unreadable", "is a directory, not an audio file"),
        Fails("unreadable", "is a directory, not an audio file"),
    ),
    "pipe-named-wav": (
        made(os.mkfifo, "pipe.wav"),
        Fails("unreadable", r"is not a regular file \(a pipe, socket or device\)"),
        Fails("unreadable", r"is not a regular file \(a pipe, socket or device\)"),
    ),
    "missing": (
        made(lambda path: None, "gone.wav"),
        Fails("missing", "file does not exist"),
        Fails("missing", "file does not exist"),
    ),
    "broken-symlink": (
        made(lambda path: path.symlink_to(path.parent / "target.wav"), "link.wav"),
        Fails("missing", r"broken symbolic link \(to .*target\.wav\)"),
        Fails("missing", r"broken symbolic link \(to .*target\.wav\)"),
    ),
}


def raised(read: Callable[[], object], path: Path, expected: Fails) -> None:
    with pytest.raises(AudioError) as error:
        read()
    assert (error.value.kind, error.value.path) == (expected.kind, str(path))
    assert str(error.value) == f"{path}: {error.value.problem}"
    assert re.fullmatch(expected.problem, error.value.problem), error.value.problem


@pytest.mark.parametrize("case", list(CASES))
def test_load_audio(tmp_path, case):
    build, expected, _ = CASES[case]
    path = build(tmp_path)
    if isinstance(expected, Fails):
        raised(lambda: load_audio(path), path, expected)
        return
    samples = load_audio(path)
    assert (samples.shape, samples.dtype) == ((expected.samples,), np.float32)
    assert np.isfinite(samples).all()


@pytest.mark.parametrize("case", list(CASES))
def test_probe(tmp_path, case):
    build, _, expected = CASES[case]
    path = build(tmp_path)
    if isinstance(expected, Fails):
        raised(lambda: probe(path, check_silence=True), path, expected)
    else:
        assert probe(path, check_silence=True) == expected


@pytest.mark.parametrize("case", ["FLOAT-one-nan", "nan-in-last-of-5-blocks", "DOUBLE-neg-inf"])
def test_probe_finds_non_finite_samples_without_the_silence_check(tmp_path, case):
    build, _, expected = CASES[case]
    path = build(tmp_path)
    raised(lambda: probe(path), path, expected)


def test_probe_without_silence_check_gives_no_verdict(tmp_path):
    path = CASES["subtype-FLOAT"][0](tmp_path)
    assert probe(path) == AudioInfo(16000, 1, 1600, None)


# ---------------------------------------------------------------- prepare

SPEAKERS = ("03", "08", "09", "10", "11", "12", "13")


def build_emodb(root: Path) -> Path:
    """Seven EmoDB speakers with a good anger clip each, then the defects of the cases."""
    for speaker in SPEAKERS:
        written(f"{speaker}a01Wa.wav", tone(1600))(root / "wav")
    defects = {
        "03a02Na.wav": silent_nan,  # silence around a NaN: non-finite, never silent
        "08a02Na.wav": late_nan,  # NaN after four blocks of signal
        "09a02Na.wav": np.zeros((1600, 1)),  # silent, float
        "10a02Na.wav": tone(1600),  # good, float
    }
    for name, data in defects.items():
        written(name, data, subtype="FLOAT")(root / "wav")
    return root


def report(out: Path) -> dict[str, tuple[str, str]]:
    with open(out / "report.csv", newline="") as handle:
        return {row["key"]: (row["reason"], row["detail"]) for row in csv.DictReader(handle)}


@pytest.mark.parametrize("check_silence", [True, False])
def test_prepare_excludes_non_finite_files_with_their_own_reason(tmp_path, check_silence):
    root = build_emodb(tmp_path / "emodb")
    prepared = prepare_corpus("emodb", root, tmp_path / "out", check_silence=check_silence)
    non_finite = {
        "03a02Na": ("non_finite_audio", "1 of 1600 samples are not finite (NaN or ±inf)"),
        "08a02Na": ("non_finite_audio", "1 of 40000 samples are not finite (NaN or ±inf)"),
    }
    silent = {"09a02Na": ("silent_audio", "peak below -60 dBFS throughout")}
    assert report(tmp_path / "out") == (non_finite | silent if check_silence else non_finite)
    kept = {u.key for u in prepared.manifest}
    assert kept == {f"{s}a01Wa" for s in SPEAKERS} | {"10a02Na"} | (
        set() if check_silence else {"09a02Na"}
    )
    summary = (tmp_path / "out/summary.txt").read_text()
    assert "  non_finite_audio: 2\n" in summary


def test_prepare_keeps_a_truncated_wav_and_reports_a_truncated_flac(tmp_path):
    root = build_emodb(tmp_path / "emodb")
    cut("11a02Na.wav", "PCM_16", 0.5)(root / "wav")
    cut("11a03Na.flac", "PCM_16", 0.5)(root / "wav")
    prepared = prepare_corpus("emodb", root, tmp_path / "out")
    by_key = {u.key: u for u in prepared.manifest}
    assert by_key["11a02Na"].duration == 23989 / 16000
    reason, detail = report(tmp_path / "out")["11a03Na"]
    assert (reason, detail) == (
        "unreadable_audio",
        "truncated or corrupt: the header promises 48000 frames but the last one does not decode",
    )
