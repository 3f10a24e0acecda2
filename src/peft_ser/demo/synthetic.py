"""Synthetic "acted emotion" speech for demos and test fixtures.

Real emotion corpora cannot be redistributed, yet a demo and the tests need audio whose label is
recoverable from the signal. This module speaks a sentence with espeak-ng and sets the prosodic
cues that acted emotions are known to move (speaking rate, pitch level, pitch range, loudness)
from a fixed table. The result is a caricature: it carries a learnable signal, not a model of how
people express emotion.

When espeak-ng is not installed, a fallback renders a vowel-like harmonic signal whose pitch,
syllable rate and loudness follow the same table, so the same code paths and a comparable
learnable signal remain available on machines without the synthesiser.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Literal
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
import soxr

Backend = Literal["auto", "espeak", "fallback"]

ESPEAK = "espeak-ng"
FALLBACK_RATE = 16000


@dataclass(frozen=True)
class Prosody:
    """espeak-ng prosody settings, each on the scale of the option that takes it.

    rate: words per minute (`-s`, default 175); pitch: base pitch 0-99 (`-p`, default 50);
    pitch_range: intonation range 0-100 (SSML `<prosody range>`, default 50, 0 is monotone);
    amplitude: loudness 0-200 (`-a`, default 100).
    """

    rate: int
    pitch: int
    pitch_range: int
    amplitude: int

    def jittered(self, rng: np.random.Generator, spread: float = 0.08) -> Prosody:
        """Return a randomly perturbed copy, so that clips of one emotion are not clones.

        Rate and amplitude move by up to ±`spread` of their value; pitch and range, whose scales
        run to about 100, move by up to ±`spread` × 100 points. Results stay in the legal ranges.
        """
        u = rng.uniform(-1.0, 1.0, size=4)
        points = spread * 100
        return replace(
            self,
            rate=_clip(round(self.rate * (1 + spread * u[0])), 80, 450),
            pitch=_clip(round(self.pitch + points * u[1]), 0, 99),
            pitch_range=_clip(round(self.pitch_range + points * u[2]), 0, 100),
            amplitude=_clip(round(self.amplitude * (1 + spread * u[3])), 0, 200),
        )


# Directions follow the acted-emotion literature (anger: fast, loud, wide range; sadness: slow,
# low, quiet, flat; happiness: high and wide); the magnitudes are exaggerated on purpose so that
# a small model trained on a few hundred clips can separate the classes.
EMOTION_PROSODY: MappingProxyType[str, Prosody] = MappingProxyType(
    {
        "Neutral": Prosody(rate=165, pitch=45, pitch_range=40, amplitude=75),
        "Angry": Prosody(rate=205, pitch=55, pitch_range=85, amplitude=120),
        "Sad": Prosody(rate=125, pitch=25, pitch_range=10, amplitude=45),
        "Happy": Prosody(rate=185, pitch=80, pitch_range=100, amplitude=100),
    }
)


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice (`language[+variant]`) with the speaker facts a corpus records.

    `fallback_f0` is the speaking pitch in Hz at `Prosody.pitch == 50`, close to what espeak-ng
    produces for the voice; the fallback signal uses it so that speakers keep their pitch.
    """

    name: str
    gender: Literal["F", "M"]
    fallback_f0: float


# Alternating genders, so any prefix of the list (e.g. the first actors of a demo) is balanced.
# Variants are attached to `en`, not `en-gb`: espeak-ng 1.51 ignores variants on `en-gb`.
VOICES: tuple[Voice, ...] = (
    Voice("en-us", "M", 112.0),
    Voice("en-us+f3", "F", 205.0),
    Voice("en+m3", "M", 101.0),
    Voice("en+f2", "F", 187.0),
    Voice("en-gb-scotland+m2", "M", 105.0),
    Voice("en-gb-x-rp+f4", "F", 174.0),
    Voice("en-029+m4", "M", 101.0),
    Voice("en-us+f5", "F", 205.0),
    Voice("en-us+m7", "M", 124.0),
    Voice("en+Annie", "F", 225.0),
)


def espeak_available() -> bool:
    """Whether the espeak-ng executable is on PATH (it is an optional system dependency)."""
    return shutil.which(ESPEAK) is not None


def get_voice(name: str) -> Voice:
    """Look up one of `VOICES` by its espeak-ng name."""
    for voice in VOICES:
        if voice.name == name:
            return voice
    known = ", ".join(v.name for v in VOICES)
    raise ValueError(f"unknown voice {name!r}; known voices: {known} (or pass a Voice)")


def synthesize(
    text: str,
    emotion: str | Prosody,
    voice: Voice | str,
    sample_rate: int = 16000,
    *,
    backend: Backend = "auto",
) -> np.ndarray:
    """Speak `text` with the prosody of `emotion`, as mono float32 samples at `sample_rate`.

    `emotion` is a key of `EMOTION_PROSODY` or an explicit `Prosody` (e.g. a jittered one).
    `backend="auto"` uses espeak-ng when it is installed and the harmonic fallback otherwise;
    `"espeak"` insists on espeak-ng and `"fallback"` forces the fallback. Output is deterministic
    for given arguments and backend.
    """
    prosody = _resolve_prosody(emotion)
    spec = voice if isinstance(voice, Voice) else get_voice(voice)
    if backend == "espeak" or (backend == "auto" and espeak_available()):
        audio, rate = _espeak(text, prosody, spec.name)
    elif backend in ("auto", "fallback"):
        audio, rate = _fallback(text, prosody, spec.fallback_f0), FALLBACK_RATE
    else:
        raise ValueError(f"unknown backend {backend!r}; use 'auto', 'espeak' or 'fallback'")
    if rate != sample_rate:
        audio = soxr.resample(audio, rate, sample_rate)
    return np.ascontiguousarray(audio, dtype=np.float32)


def _resolve_prosody(emotion: str | Prosody) -> Prosody:
    if isinstance(emotion, Prosody):
        return emotion
    if emotion not in EMOTION_PROSODY:
        known = ", ".join(EMOTION_PROSODY)
        raise ValueError(f"unknown emotion {emotion!r}; known emotions: {known}")
    return EMOTION_PROSODY[emotion]


def _clip(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _espeak(text: str, prosody: Prosody, voice: str) -> tuple[np.ndarray, int]:
    """Run espeak-ng into a temporary WAV file and read it back.

    Pitch range has no command-line option, hence the SSML wrapper. In SSML mode espeak-ng
    ignores `-z` and appends about half a second of silence, which is cut off again.
    """
    if not espeak_available():
        raise RuntimeError(f"{ESPEAK} is not installed (install it, or use backend='fallback')")
    ssml = f'<speak><prosody range="{prosody.pitch_range}">{escape(text)}</prosody></speak>'
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        command = [
            ESPEAK, "--stdin", "-m", "-z", "-w", str(wav), "-v", voice,
            "-s", str(prosody.rate), "-p", str(prosody.pitch), "-a", str(prosody.amplitude),
        ]  # fmt: skip
        done = subprocess.run(command, input=ssml.encode(), capture_output=True, check=False)
        if done.returncode != 0 or not wav.is_file():
            message = done.stderr.decode(errors="replace").strip()
            raise RuntimeError(f"{ESPEAK} failed for voice {voice!r}: {message}")
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    return _trim_trailing_silence(audio.mean(axis=1), int(rate)), int(rate)


def _trim_trailing_silence(audio: np.ndarray, rate: int, keep_s: float = 0.05) -> np.ndarray:
    """Cut the silent tail (below -80 dBFS), keeping `keep_s` seconds for the last decay."""
    loud = np.flatnonzero(np.abs(audio) > 1e-4)
    end = int(loud[-1]) + 1 + round(keep_s * rate) if loud.size else audio.size
    return audio[: min(end, audio.size)]


# Formant frequencies (F1, F2 in Hz) of five vowels; each syllable takes the vowel of its letter,
# so sentences differ in timbre as well as in length.
_VOWEL_FORMANTS: dict[str, tuple[float, float]] = {
    "a": (750.0, 1200.0),
    "e": (500.0, 1800.0),
    "i": (300.0, 2300.0),
    "o": (500.0, 900.0),
    "u": (320.0, 800.0),
}
_SYLLABLES_PER_WORD = 1.4
_HARMONICS = 40


def _fallback(text: str, prosody: Prosody, base_f0: float) -> np.ndarray:
    """Render one voiced pulse per syllable of `text` with the pitch and timing of `prosody`.

    Mapping from the table: pitch 0-99 scales F0 by 2^((pitch-50)/50); range 0-100 sets the
    depth (up to 6 semitones) of a rise-fall contour over the sentence; rate sets the syllable
    rate at 1.4 syllables per word; amplitude scales the level as it does in espeak-ng.
    """
    vowels = re.findall(r"[aeiouy]+", text.lower()) or ["a"]
    syllable_s = 60.0 / (prosody.rate * _SYLLABLES_PER_WORD)
    per_syllable = max(1, round(syllable_s * FALLBACK_RATE))
    n = per_syllable * len(vowels)
    position = np.arange(n) / n
    semitones = 6.0 * prosody.pitch_range / 100 * np.sin(np.pi * position) - 2.0 * position
    f0 = base_f0 * 2 ** ((prosody.pitch - 50) / 50) * 2 ** (semitones / 12)
    phase = 2 * np.pi * np.cumsum(f0) / FALLBACK_RATE
    formants = np.array([_VOWEL_FORMANTS.get(v[0], _VOWEL_FORMANTS["e"]) for v in vowels])
    formants = np.repeat(formants, per_syllable, axis=0)
    audio = np.zeros(n)
    for k in range(1, _HARMONICS + 1):
        frequency = k * f0
        weight = _formant_gain(frequency, formants) * (frequency < FALLBACK_RATE / 2 - 500)
        audio += weight * np.sin(k * phase)
    envelope = np.tile(_syllable_envelope(per_syllable), len(vowels))
    audio *= envelope / max(float(np.abs(audio).max()), 1e-9)
    return 0.3 * prosody.amplitude / 100 * audio


def _formant_gain(frequency: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Spectral envelope of a vowel: two resonances of 100 Hz half-width on a -6 dB/oct tilt."""
    peaks = sum(1.0 / (1.0 + ((frequency - formants[:, i]) / 100.0) ** 2) for i in range(2))
    return np.asarray(peaks / np.sqrt(frequency / 100.0), dtype=np.float64)


def _syllable_envelope(length: int) -> np.ndarray:
    """A raised-cosine pulse over the first 80% of a syllable, silence after it."""
    voiced = max(1, int(0.8 * length))
    pulse = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(voiced) / voiced)
    return np.concatenate([pulse, np.zeros(length - voiced)])


LONG_RECORDING_LINES = (
    ("I can't believe you did that again.", "Angry", "en-us+m7"),
    ("Well, it is a quiet afternoon here.", "Neutral", "en-us+f5"),
    ("Nobody came to see me off today.", "Sad", "en-gb-x-rp+f4"),
    ("We won, we actually won the whole thing!", "Happy", "en-us+m7"),
)
"""Sentences a long recording cycles through (each synthesised once)."""


def write_long_recording(
    path: str | Path, seconds: float, *, sample_rate: int = 16000, seed: int = 0
) -> list[tuple[float, float]]:
    """Write a recording of about ``seconds`` for long-recording checks; return its speech.

    `LONG_RECORDING_LINES` in turn, each after a pause of 1-3 s; every third pause holds a 1-s
    tone, a sound that is not speech. The file is written sentence by sentence, so an hour-long
    one never sits in memory. Returns each sentence's ``(start, end)`` in seconds.
    """
    rng = np.random.default_rng(seed)
    lines = [
        synthesize(text, emotion, voice, sample_rate)
        for text, emotion, voice in LONG_RECORDING_LINES
    ]
    t = np.arange(sample_rate) / sample_rate
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    speech: list[tuple[float, float]] = []
    written = 0
    with sf.SoundFile(path, "w", sample_rate, 1, "PCM_16") as handle:
        while written < seconds * sample_rate:
            pause = np.zeros(round(rng.uniform(1.0, 3.0) * sample_rate), dtype=np.float32)
            if len(speech) % 3 == 2:
                pause[: len(tone)] = tone
            line = lines[len(speech) % len(lines)]
            start = written + len(pause)
            handle.write(np.concatenate([pause, line]))
            written = start + len(line)
            speech.append((start / sample_rate, written / sample_rate))
    return speech
