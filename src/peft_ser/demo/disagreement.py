"""A generated corpus whose annotators disagree in a known way, for the distribution task.

Each clip is a tone under a syllable-rate envelope (a caricature of prosody, as the tests'
tones) placed on a continuum between the four classes of the paper: position ``x`` in [0, 3]
sets the pitch (150 Hz at 0, doubling with each step: 150, 300, 600, 1200 Hz at the classes
Neutral, Angry, Sad, Happy) and the syllable rate (2, 5, 9, 14 Hz, interpolated). A clip
between two classes is heard as either: a listener chooses the class at distance ``d`` < 1
from ``x`` with probability ``1 − d`` and the other neighbour otherwise (`shares_at`), so the
true vote distribution of every clip is known. Positions are drawn from a grid of tenths with
the half-way point left out.

The corpus's votes are those of ``annotators`` listeners: with ``sampled`` each draws a class
from the clip's true distribution, as real raters are a sample of all listeners (an odd number
of them, so two neighbours never tie; near the middle the majority then often goes to the
farther class); else they split exactly as the true distribution does (``annotators`` must then
make every share a whole number of listeners: 10 for tenths), and the majority is always the
nearer class. The label is the majority. Every third clip gets one listener more who chose a
category outside the label set (``other``), which the distribution task drops.

The corpus is written prepared (`save_prepared`): ``wav/`` and ``prepared/`` under the root,
one fold (``fold1``) that trains on the first 60 % of every speaker's clips and holds 20 % out
for dev and 20 % for test.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from peft_ser.data.manifest import (
    OTHER_VOTES,
    PAPER4,
    Fold,
    PreparedCorpus,
    Utterance,
    save_prepared,
)

RATE = 16000
PITCHES_HZ = (150.0, 300.0, 600.0, 1200.0)
"""The pitch of each class of `PAPER4`, in order: one octave apart."""
SYLLABLES_HZ = (2.0, 5.0, 9.0, 14.0)
"""The syllable rate of each class of `PAPER4`."""
SPEAKERS = {"s1": "F", "s2": "M", "s3": "F", "s4": "M"}
POSITIONS = (*(k + f / 10 for k in range(3) for f in range(10) if f != 5), 3.0)
"""Where clips may lie on the continuum: tenths from 0 to 3, none half-way between classes."""


def shares_at(position: float) -> list[float]:
    """The true vote shares of a clip at ``position``: ``1 − d`` for each class within
    distance ``d`` < 1, 0 for the others (two neighbours, or one class exactly)."""
    return [max(0.0, 1.0 - abs(position - k)) for k in range(len(PAPER4))]


@dataclass(frozen=True)
class DisagreementCorpus:
    """The prepared folder, and each clip's true vote distribution over `PAPER4` by key."""

    prepared: Path
    truth: dict[str, list[float]]


def write_disagreement_corpus(
    root: Path,
    clips_per_speaker: int = 60,
    annotators: int = 10,
    sampled: bool = False,
    seed: int = 0,
) -> DisagreementCorpus:
    """Write the clips and the prepared corpus under ``root`` (see the module docstring)."""
    if sampled and annotators % 2 == 0:
        raise ValueError(f"annotators {annotators}: sampled votes need an odd number (no ties)")
    rng = np.random.default_rng(seed)
    utterances, truth = [], {}
    for speaker, gender in SPEAKERS.items():
        for take in range(clips_per_speaker):
            position = float(rng.choice(POSITIONS))
            key = f"{speaker}_{take:03d}"
            path = root / "wav" / f"{key}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            wave = _clip(position, rng)
            sf.write(path, wave, RATE)
            truth[key] = shares_at(position)
            if sampled:
                counts = rng.multinomial(annotators, truth[key]).tolist()
            else:
                counts = [round(annotators * share) for share in truth[key]]
            votes = {label: float(count) for label, count in zip(PAPER4, counts, strict=True)}
            votes[OTHER_VOTES] = 1.0 if take % 3 == 0 else 0.0
            label = PAPER4[int(np.argmax(counts))]
            utterances.append(
                Utterance(key, speaker, gender, str(path), label, speaker, corpus="disagreement",
                          label=label, duration=wave.shape[0] / RATE, sample_rate=RATE,
                          channels=1, raw_votes=dict(votes), votes=votes)
            )  # fmt: skip
    train_end, dev_end = round(0.6 * clips_per_speaker), round(0.8 * clips_per_speaker)

    def takes(first: int, last: int) -> list[str]:
        return [f"{s}_{take:03d}" for s in SPEAKERS for take in range(first, last)]

    fold = Fold(
        "fold1", takes(0, train_end), takes(train_end, dev_end), takes(dev_end, clips_per_speaker)
    )
    prepared = root / "prepared"
    save_prepared(prepared, PreparedCorpus(utterances, [fold], list(PAPER4)))
    return DisagreementCorpus(prepared, truth)


def _clip(position: float, rng: np.random.Generator) -> np.ndarray:
    """0.5–1 s of a tone at the pitch and syllable rate of ``position`` (±3 % pitch jitter),
    with a little noise."""
    seconds = int(rng.uniform(0.5, 1.0) * RATE) / RATE
    pitch = PITCHES_HZ[0] * 2**position * rng.uniform(0.97, 1.03)
    syllables = float(np.interp(position, range(len(SYLLABLES_HZ)), SYLLABLES_HZ))
    t = np.arange(round(seconds * RATE)) / RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * syllables * t + rng.uniform(0, 6))
    wave = 0.3 * envelope * np.sin(2 * np.pi * pitch * t) + 0.01 * rng.standard_normal(t.size)
    return wave.astype(np.float32)
