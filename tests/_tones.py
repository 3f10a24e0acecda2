"""Generated tones: the one tone every test writes or feeds, a small corpus a tiny random
backbone can learn, and quick run configs for it.

The corpus is a caricature of prosody: each class has its own pitch and syllable rate (a tone
with an amplitude envelope), 0.5–1 s per clip, two speakers per gender. ``length_by_label``
makes clip length follow the label (as in acted speech, taken to the extreme), the condition
under which length-sorted batches hold one label each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

import peft_ser.utils.precision as precision
from peft_ser.config import RunConfig, load_run_config
from peft_ser.data.manifest import (
    ATTRIBUTES,
    PAPER4,
    Fold,
    PreparedCorpus,
    Utterance,
    read_prepared,
    save_prepared,
)
from peft_ser.data.states import FeatureCache
from peft_ser.evaluation.results import BadAudioLog
from peft_ser.training.loop import FoldRunner

RATE = 16000


def tone(
    seconds: float,
    hz: float = 220.0,
    *,
    rate: int = RATE,
    amplitude: float = 0.3,
    phase: float = 0.0,
    start: float = 0.0,
    syllables: float | None = None,
    syllable_phase: float = 0.0,
    noise: float = 0.0,
    rng: np.random.Generator | int = 0,
    dtype: type[np.floating] = np.float32,
) -> np.ndarray:
    """``seconds`` (rounded to whole samples) of ``amplitude * sin(2π·hz·t + phase)`` at ``rate``.

    ``start`` shifts ``t`` (the same tone from a later point); ``syllables`` puts it under a
    syllable-rate envelope ``0.5 + 0.5 sin(2π·syllables·t + syllable_phase)``, a caricature of
    speech; ``noise`` adds that much white noise from ``rng`` (a seed, or a generator a caller
    draws several clips from). Mono; tests lay out channels as the file under test needs.
    """
    t = np.arange(round(seconds * rate)) / rate + start
    gain = amplitude
    if syllables is not None:
        gain = amplitude * (0.5 + 0.5 * np.sin(2 * np.pi * syllables * t + syllable_phase))
    wave = gain * np.sin(2 * np.pi * hz * t + phase)
    if noise:
        wave = wave + noise * np.random.default_rng(rng).standard_normal(t.shape[0])
    return wave.astype(dtype)


PITCH_HZ = {"Neutral": 150.0, "Angry": 300.0, "Sad": 600.0, "Happy": 1200.0}
SYLLABLES_HZ = {"Neutral": 2.0, "Angry": 5.0, "Sad": 9.0, "Happy": 14.0}
SPEAKERS = {"s1": "F", "s2": "M", "s3": "F", "s4": "M"}
CLIPS_PER_CLASS_AND_SPEAKER = 3


LENGTH_BY_LABEL_S = {"Neutral": 0.5, "Angry": 0.7, "Sad": 0.9, "Happy": 1.1}


def _clip(label: str, rng: np.random.Generator, length_by_label: bool = False) -> np.ndarray:
    seconds = rng.uniform(0.5, 1.0)
    if length_by_label:
        seconds = LENGTH_BY_LABEL_S[label] + rng.uniform(0.0, 0.15)
    pitch = PITCH_HZ[label] * rng.uniform(0.9, 1.1)
    return _syllabic(seconds, pitch, SYLLABLES_HZ[label], rng)


def _syllabic(
    seconds: float, pitch: float, syllables: float, rng: np.random.Generator
) -> np.ndarray:
    """A corpus clip: a tone of ``pitch`` Hz under a syllable-rate envelope of random phase, with
    a little noise; ``seconds`` is cut down to whole samples, not rounded (the corpus's clips,
    and the learning bounds measured on them, have always been so)."""
    whole = int(seconds * RATE) / RATE
    return tone(
        whole, pitch, syllables=syllables, syllable_phase=rng.uniform(0, 6), noise=0.01, rng=rng
    )


def make_corpus(
    root: Path, length_by_label: bool = False, clips: int = CLIPS_PER_CLASS_AND_SPEAKER
) -> Path:
    """Write clips and a prepared corpus (manifest, two folds, labels); return its directory.

    Each fold trains on all but two takes of every speaker; dev and test each hold those
    takes from one speaker of each gender.
    """
    rng = np.random.default_rng(0)
    utterances = []
    for speaker, gender in SPEAKERS.items():
        for label in PAPER4:
            for take in range(clips):
                key = f"{speaker}_{label}_{take}"
                path = root / "wav" / f"{key}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                wave = _clip(label, rng, length_by_label)
                sf.write(path, wave, 16000)
                utterances.append(
                    Utterance(key, speaker, gender, str(path), label, speaker, corpus="tones",
                              label=label, duration=wave.shape[0] / 16000, sample_rate=16000,
                              channels=1)
                )  # fmt: skip

    def keys(take: int, speakers: tuple[str, ...] = tuple(SPEAKERS)) -> list[str]:
        return [u.key for u in utterances if u.key.endswith(f"_{take}") and u.speaker in speakers]

    def fold(name: str, held_out: int) -> Fold:
        train = [k for take in range(clips) if take != held_out for k in keys(take)]
        return Fold(name, train, keys(held_out, ("s1", "s2")), keys(held_out, ("s3", "s4")))

    folds = [fold("fold1", clips - 1), fold("fold2", 0)]
    prepared = root / "prepared"
    save_prepared(prepared, PreparedCorpus(utterances, folds, list(PAPER4)))
    return prepared


ATTRIBUTE_CLIPS = 16
"""Clips per speaker of the attribute corpus: takes 0-9 train, 10-15 dev or test."""


def arousal_of(pitch: float) -> float:
    """The generated arousal: 1 at 150 Hz rising to 5 at 1200 Hz, linear in octaves."""
    return 1.0 + 4.0 * float(np.log2(pitch / 150.0)) / 3.0


def make_attribute_corpus(root: Path, targets: str = "attributes") -> Path:
    """A prepared corpus whose ratings follow the tone: pitch drawn log-uniformly from
    150–1200 Hz sets arousal (`arousal_of`) and valence (6 − arousal: falling with pitch), the
    syllable rate (2–14 Hz) sets dominance (1–5). Labels are pitch octaves, as in
    `make_corpus`'s classes (so a ``both`` corpus trains categories and attributes alike).

    One fold: takes 0-9 of every speaker train; takes 10-15 of s1, s2 dev, of s3, s4 test.
    """
    rng = np.random.default_rng(1)
    utterances = []
    for speaker, gender in SPEAKERS.items():
        for take in range(ATTRIBUTE_CLIPS):
            key = f"{speaker}_{take}"
            octave = rng.uniform(0.0, 3.0)
            pitch, syllables = 150.0 * 2**octave, rng.uniform(2.0, 14.0)
            wave = _syllabic(rng.uniform(0.5, 1.0), pitch, syllables, rng)
            path = root / "wav" / f"{key}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, wave, 16000)
            label = PAPER4[min(int(octave * 4 / 3), 3)]
            arousal, dominance = arousal_of(pitch), 1.0 + 4.0 * (syllables - 2.0) / 12.0
            utterances.append(
                Utterance(key, speaker, gender, str(path), label, speaker, corpus="tones",
                          label=label, duration=wave.shape[0] / 16000, sample_rate=16000,
                          channels=1, arousal=arousal, valence=6.0 - arousal,
                          dominance=dominance)
            )  # fmt: skip

    def keys(takes: range, speakers: tuple[str, ...]) -> list[str]:
        return [f"{s}_{t}" for s in speakers for t in takes]

    everyone = tuple(SPEAKERS)
    held_out = range(10, ATTRIBUTE_CLIPS)
    fold = Fold(
        "fold1", keys(range(10), everyone), keys(held_out, ("s1", "s2")),
        keys(held_out, ("s3", "s4")),
    )  # fmt: skip
    prepared = root / "prepared"
    corpus = PreparedCorpus(utterances, [fold], list(PAPER4), None, targets, ATTRIBUTES, "1-5")
    save_prepared(prepared, corpus)
    return prepared


def tiny_run(corpus: Path, out: Path, **overrides: object) -> RunConfig:
    """A few seconds of training: tiny backbone, narrow head, short crops, few epochs, and
    length buckets (the setting these fixtures' learning bounds were measured with; runs
    default to random batches)."""
    settings: dict[str, object] = {
        "data.corpus": str(corpus),
        "data.bucketing": True,
        "data.folds": "1",
        "data.batch_size": 4,
        "data.crop_seconds": 0.75,
        "data.num_workers": 0,
        "model.backbone": "tiny-wavlm",
        "model.method": "frozen",
        "model.head_dim": 32,
        "optim.epochs": 4,
        "optim.lr": 5e-3,
        "output_dir": str(out),
        "progress": False,
    }
    settings.update(overrides)
    return load_run_config(overrides=settings)


def bf16_lora_step_setup(corpus: Path, out: Path) -> tuple[FoldRunner, Any, list[torch.dtype]]:
    """A LoRA fold runner under bf16 mixed precision on whatever device Accelerate picks, one
    training batch, and the list a backbone linear layer appends its output dtypes to: what a
    test needs to take one step and check what it computed in and what it changed."""
    config = tiny_run(corpus, out, **{"model.method": "lora", "mixed_precision": "bf16"})
    prepared = read_prepared(corpus)
    accelerator = precision.accelerator_for("bf16")
    runner = FoldRunner(
        config, accelerator, prepared, prepared.folds[0], out / "fold",
        FeatureCache(), BadAudioLog(out / "bad.csv"),
    )  # fmt: skip
    seen: list[torch.dtype] = []
    linear = next(m for m in runner.model.backbone.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    sampler, _ = runner.source.sampler("train", 4, shuffle=True, epoch=1)
    batch = next(iter(runner.source.batches("train", sampler)))
    return runner, batch, seen
