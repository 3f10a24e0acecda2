"""EmoDB (Berlin Database of Emotional Speech): ten actors, labels coded in the file names.

``wav/03a01Fa.wav``: speaker 03, text a01, emotion letter F (German initials: W anger,
L boredom, E disgust, A fear, F happiness, T sadness, N neutral; so A is fear, not anger),
version a. Gender comes from the corpus documentation's speaker list. Folds use the CREMA-D
rule over the ten sorted speakers: 5 blocks of 2 test speakers, the last 2 others dev.
"""

from __future__ import annotations

import re
from pathlib import Path

from peft_ser.corpora.base import (
    Corpus,
    Entry,
    LabelScheme,
    Protocol,
    Scan,
    entries_from_names,
    find_audio,
    stem,
)
from peft_ser.corpora.folds import speaker_block_folds

_NAME = re.compile(r"^(\d\d)[a-z]\d\d([A-Z])[a-z]$")
_GENDERS = {"03": "M", "08": "F", "09": "F", "10": "M", "11": "M"}
_GENDERS |= {"12": "M", "13": "F", "14": "F", "15": "M", "16": "F"}


def _parse(path: str) -> Entry | None:
    match = _NAME.match(stem(path))
    if match is None:
        return None
    speaker, emotion = match.groups()
    return Entry(stem(path), speaker, _GENDERS.get(speaker, "U"), path, emotion)


def scan(root: Path) -> Scan:
    """Every audio file in ``wav/``; names that do not parse count as unlabelled."""
    audio = find_audio(root, "wav/*")
    return Scan(entries_from_names(audio, _parse), audio)


CORPUS = Corpus(
    name="emodb",
    title="EmoDB",
    layout="wav/<speaker><text><emotion><version>.wav, e.g. wav/03a01Fa.wav",
    looks_like=lambda root: (root / "wav").is_dir(),
    scan=scan,
    labels=LabelScheme(
        full={
            "N": "Neutral",
            "W": "Angry",
            "T": "Sad",
            "F": "Happy",
            "L": "Bored",
            "E": "Disgusted",
            "A": "Fearful",
        },
        paper4={"N": "Neutral", "W": "Angry", "T": "Sad", "F": "Happy"},
    ),
    protocols={
        "paper": Protocol(
            "5 contiguous speaker folds (2 test speakers each); the last 2 others dev",
            5,
            speaker_block_folds,
        ),
    },
    top_dirs=("emodb", "EmoDB"),
)
