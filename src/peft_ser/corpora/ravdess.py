"""RAVDESS speech (``Actor_01`` … ``Actor_24``): labels coded in the file names.

``03-01-EE-II-SS-RR-AA.wav``: modality 03 (audio only), vocal channel 01 speech / 02 song,
emotion EE, intensity, statement, repetition, actor AA (odd male, even female). Song files,
if present in the same folders, are outside the speech protocol. ``calm`` is dropped from
``paper4`` and merged into Neutral by the ``paper4+calm`` label set. Folds are by actor, with
the CREMA-D rule (5 contiguous actor blocks of 5,5,5,5,4; the last ceil(n/5) others dev).
"""

from __future__ import annotations

import re
from pathlib import Path

from peft_ser.corpora.base import (
    Corpus,
    Entry,
    LabelScheme,
    LabelSet,
    Protocol,
    Scan,
    entries_from_names,
    find_audio,
    stem,
)
from peft_ser.corpora.folds import speaker_block_folds
from peft_ser.data.manifest import PAPER4

_NAME = re.compile(r"^\d\d-(\d\d)-(\d\d)-\d\d-\d\d-\d\d-(\d\d)$")
_PAPER4 = {"01": "Neutral", "05": "Angry", "04": "Sad", "03": "Happy"}


def _parse(path: str) -> Entry | None:
    match = _NAME.match(stem(path))
    if match is None:
        return None
    _, emotion, actor = match.groups()
    return Entry(stem(path), actor, "M" if int(actor) % 2 else "F", path, emotion)


def scan(root: Path) -> Scan:
    """Every audio file in the actor folders; names that do not parse count as unlabelled."""
    audio = find_audio(root, "Actor_*/*")
    return Scan(entries_from_names(audio, _parse), audio)


CORPUS = Corpus(
    name="ravdess",
    title="RAVDESS",
    layout="Actor_01 … Actor_24 holding 03-01-EE-II-SS-RR-AA.wav",
    looks_like=lambda root: any(root.glob("Actor_[0-9][0-9]")),
    scan=scan,
    labels=LabelScheme(
        full={
            "01": "Neutral",
            "05": "Angry",
            "04": "Sad",
            "03": "Happy",
            "02": "Calm",
            "06": "Fearful",
            "07": "Disgusted",
            "08": "Surprised",
        },
        paper4=_PAPER4,
        extra_sets={
            "paper4+calm": LabelSet(PAPER4, _PAPER4 | {"02": "Neutral"}, "paper4, calm as Neutral")
        },
    ),
    protocols={
        "paper": Protocol(
            "5 contiguous actor folds (5,5,5,5,4 test actors); last ceil(n/5) others dev",
            5,
            speaker_block_folds,
            keep=lambda entry: entry.key.startswith("03-01-"),
        ),
    },
    top_dirs=("Audio_Speech_Actors_01-24",),
)
