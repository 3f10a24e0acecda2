"""Tests of the synthetic speech and of the committed demo corpus built from it."""

from __future__ import annotations

import csv
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf

from peft_ser.demo import synthetic
from peft_ser.demo.synthetic import EMOTION_PROSODY, VOICES, Backend, Prosody, Voice, synthesize

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo" / "CREMA-D"
TEXT = "The surface is slick"
needs_espeak = pytest.mark.skipif(not synthetic.espeak_available(), reason="espeak-ng missing")
BACKENDS = [pytest.param("espeak", marks=needs_espeak), "fallback"]


@pytest.fixture(scope="module")
def script() -> Iterator[ModuleType]:
    """The corpus generator, imported from its file (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "make_demo_corpus", ROOT / "scripts" / "make_demo_corpus.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def median_f0(audio: np.ndarray, rate: int = 16000) -> float:
    """Median autocorrelation pitch (60-400 Hz) over the loud, clearly periodic 40 ms frames."""
    frame, hop = int(0.04 * rate), int(0.01 * rate)
    low, high = rate // 400, rate // 60
    loudness = np.sqrt(np.mean(audio**2))
    pitches = []
    for start in range(0, audio.size - frame, hop):
        window = audio[start : start + frame] - audio[start : start + frame].mean()
        if np.sqrt(np.mean(window**2)) < 0.3 * loudness:
            continue
        spectrum = np.fft.rfft(window, 2 * frame)
        correlation = np.fft.irfft(np.abs(spectrum) ** 2)[:frame]
        lag = low + int(np.argmax(correlation[low:high]))
        if correlation[lag] > 0.5 * correlation[0]:
            pitches.append(rate / lag)
    return float(np.median(pitches))


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


# --- synthesize -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_output_is_deterministic_float32_mono(backend: Backend) -> None:
    first = synthesize(TEXT, "Neutral", "en-us", backend=backend)
    second = synthesize(TEXT, "Neutral", "en-us", backend=backend)
    assert first.dtype == np.float32 and first.ndim == 1
    np.testing.assert_array_equal(first, second)
    assert 0.5 < first.size / 16000 < 3.0
    assert 0.0 < np.abs(first).max() <= 1.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_sample_rate_sets_length(backend: Backend) -> None:
    at_16k = synthesize(TEXT, "Happy", "en-us+f3", 16000, backend=backend)
    at_8k = synthesize(TEXT, "Happy", "en-us+f3", 8000, backend=backend)
    assert abs(at_8k.size - at_16k.size / 2) <= 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_emotions_move_the_prosodic_cues(backend: Backend) -> None:
    """Sad is slowest, quietest and lowest; Angry fastest and loudest; Happy highest."""
    clips = {
        emotion: synthesize(TEXT, emotion, "en-us", backend=backend) for emotion in EMOTION_PROSODY
    }
    sizes = {e: clip.size for e, clip in clips.items()}
    loudness = {e: rms(clip) for e, clip in clips.items()}
    pitch = {e: median_f0(clip) for e, clip in clips.items()}
    assert sizes["Sad"] > sizes["Neutral"] > sizes["Angry"]
    assert loudness["Angry"] > loudness["Neutral"] > loudness["Sad"]
    assert pitch["Happy"] > pitch["Neutral"] > pitch["Sad"]


@needs_espeak
def test_voices_keep_their_gender_pitch() -> None:
    pitches = {v.name: median_f0(synthesize(TEXT, "Neutral", v)) for v in VOICES}
    for voice in VOICES:
        assert (pitches[voice.name] > 150) == (voice.gender == "F"), voice.name


def test_voice_table_is_gender_balanced_and_unique() -> None:
    assert len({v.name for v in VOICES}) == len(VOICES)
    genders = [v.gender for v in VOICES]
    assert genders.count("F") == genders.count("M")


def test_auto_falls_back_without_espeak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic, "espeak_available", lambda: False)
    automatic = synthesize(TEXT, "Sad", "en+f2")
    np.testing.assert_array_equal(automatic, synthesize(TEXT, "Sad", "en+f2", backend="fallback"))
    with pytest.raises(RuntimeError, match="not installed"):
        synthesize(TEXT, "Sad", "en+f2", backend="espeak")


def test_fallback_follows_the_voice_pitch() -> None:
    low = Voice("en-us", "M", 100.0)
    high = Voice("en-us", "M", 200.0)
    ratio = median_f0(synthesize(TEXT, "Neutral", high, backend="fallback")) / median_f0(
        synthesize(TEXT, "Neutral", low, backend="fallback")
    )
    assert ratio == pytest.approx(2.0, rel=0.1)


def test_unknown_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown emotion"):
        synthesize(TEXT, "Bored", "en-us")
    with pytest.raises(ValueError, match="unknown voice"):
        synthesize(TEXT, "Sad", "xx-nowhere")


def test_jitter_is_seeded_small_and_in_range() -> None:
    base = EMOTION_PROSODY["Angry"]
    first = base.jittered(np.random.default_rng(1))
    assert first == base.jittered(np.random.default_rng(1))
    assert first != base.jittered(np.random.default_rng(2))
    assert abs(first.rate - base.rate) <= 0.08 * base.rate + 1
    extreme = Prosody(rate=450, pitch=99, pitch_range=100, amplitude=200)
    for seed in range(20):
        p = extreme.jittered(np.random.default_rng(seed), spread=0.5)
        assert p.rate <= 450 and p.pitch <= 99 and p.pitch_range <= 100 and p.amplitude <= 200


# --- the corpus generator -------------------------------------------------------------------


def test_generator_is_deterministic_and_matches_layout(script: ModuleType, tmp_path: Path) -> None:
    args = ["--actors", "2", "--sentences", "IEO", "TSI", "--backend", "fallback"]
    script.main(["--out", str(tmp_path / "a"), *args])
    script.main(["--out", str(tmp_path / "b"), *args])
    names = sorted(p.name for p in (tmp_path / "a" / "AudioWAV").iterdir())
    assert len(names) == 2 * 2 * 4
    for name in names:
        a, b = (tmp_path / d / "AudioWAV" / name for d in ("a", "b"))
        assert a.read_bytes() == b.read_bytes()
    check_layout(script, tmp_path / "a", actors=2, sentences=2)
    with pytest.raises(SystemExit):
        script.main(["--out", str(tmp_path / "a"), *args])


def test_generator_constants_are_crema_d(script: ModuleType) -> None:
    """The headers, sentence codes and vote letters are those of the real CREMA-D files."""
    assert ",".join(f'"{h}"' for h in script.DEMOGRAPHICS_HEADER) == (
        '"ActorID","Age","Sex","Race","Ethnicity"'
    )
    assert ",".join(f'"{h}"' for h in script.SUMMARY_HEADER) == (
        '"","FileName","VoiceVote","VoiceLevel","FaceVote","FaceLevel",'
        '"MultiModalVote","MultiModalLevel"'
    )
    codes = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
    assert tuple(script.SENTENCES) == codes
    assert {vote for _, vote in script.EMOTIONS.values()} == set("NASH")


# --- the committed demo corpus --------------------------------------------------------------


def test_demo_corpus_layout(script: ModuleType) -> None:
    check_layout(
        script, DEMO, actors=script.DEFAULT_ACTORS, sentences=len(script.DEFAULT_SENTENCES)
    )
    assert "synthetic" in (DEMO / "README.md").read_text().lower()


def check_layout(script: ModuleType, root: Path, actors: int, sentences: int) -> None:
    """File names, audio format and both CSV tables agree with each other and with CREMA-D."""
    wavs = sorted((root / "AudioWAV").glob("*.wav"))
    assert len(wavs) == actors * sentences * 4
    names = [w.stem for w in wavs]
    assert all(script.CLIP_NAME.fullmatch(n) for n in names)
    for wav in wavs:
        info = sf.info(wav)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")

    demographics = (root / "VideoDemographics.csv").read_text().splitlines()
    assert demographics[0] == '"ActorID","Age","Sex","Race","Ethnicity"'
    people = list(csv.reader(demographics[1:]))
    assert [int(row[0]) for row in people] == [1001 + i for i in range(actors)]
    assert {n[:4] for n in names} == {row[0] for row in people}
    assert {row[2] for row in people} <= {"Female", "Male"}

    summary = (root / "processedResults" / "summaryTable.csv").read_text().splitlines()
    assert summary[0] == ",".join(f'"{h}"' for h in script.SUMMARY_HEADER)
    assert all(line.startswith('"') and line.endswith('"') for line in summary)
    rows = list(csv.reader(summary[1:]))
    assert [int(row[0]) for row in rows] == list(range(1, len(wavs) + 1))
    assert [row[1] for row in rows] == names
    letters = {code: vote for code, (_, vote) in script.EMOTIONS.items()}
    assert all(row[6] == letters[row[1].split("_")[2]] for row in rows)


@pytest.fixture(scope="module")
def demo_stats() -> dict[str, dict[str, np.ndarray]]:
    """Per emotion code: duration (s), RMS and pitch in semitones relative to the actor's mean."""
    per_clip: dict[str, list[tuple[str, float, float, float]]] = {}
    for wav in sorted((DEMO / "AudioWAV").glob("*.wav")):
        audio, rate = sf.read(wav, dtype="float32")
        actor, _, emotion, _ = wav.stem.split("_")
        semitones = 12 * np.log2(median_f0(audio, rate))
        per_clip.setdefault(actor, []).append((emotion, audio.size / rate, rms(audio), semitones))
    stats: dict[str, dict[str, list[float]]] = {}
    for clips in per_clip.values():
        centre = np.mean([c[3] for c in clips])
        for emotion, duration, loudness, semitones in clips:
            entry = stats.setdefault(emotion, {"duration": [], "rms": [], "pitch": []})
            entry["duration"].append(duration)
            entry["rms"].append(loudness)
            entry["pitch"].append(semitones - centre)
    return {e: {k: np.array(v) for k, v in s.items()} for e, s in stats.items()}


def test_demo_emotions_differ_in_duration_loudness_and_pitch(
    demo_stats: dict[str, dict[str, np.ndarray]],
) -> None:
    mean = {e: {k: float(v.mean()) for k, v in s.items()} for e, s in demo_stats.items()}
    assert mean["SAD"]["duration"] > mean["NEU"]["duration"] > mean["ANG"]["duration"]
    assert mean["ANG"]["rms"] > mean["NEU"]["rms"] > mean["SAD"]["rms"]
    assert mean["HAP"]["pitch"] > mean["NEU"]["pitch"] + 3 > mean["SAD"]["pitch"] + 6


def test_demo_clips_vary_within_an_emotion(demo_stats: dict[str, dict[str, np.ndarray]]) -> None:
    """Jitter, voices and sentences spread each cue: no emotion is a set of near-copies."""
    for stats in demo_stats.values():
        assert stats["duration"].std() / stats["duration"].mean() > 0.05
        assert stats["rms"].std() / stats["rms"].mean() > 0.05


def test_demo_clips_are_distinct() -> None:
    contents = {w.read_bytes() for w in (DEMO / "AudioWAV").glob("*.wav")}
    assert len(contents) == len(list((DEMO / "AudioWAV").glob("*.wav")))
