"""CREMA-D: 7,442 clips of 91 actors (``1001``–``1091``), labelled by crowd votes.

The paper labels each clip by ``MultiModalVote`` in ``processedResults/summaryTable.csv``
(which can differ from the emotion in the file name) and drops ties such as ``N:S``. The
table's first column is unnamed and every field is quoted; the file-name column is spelled
``FileName`` in the file and ``fileName`` in the README, so it is looked up case-insensitively.
Gender comes from ``VideoDemographics.csv`` (``U`` when the file is absent).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from peft_ser.corpora.base import (
    PAPER4_BY_INITIAL,
    Corpus,
    Entry,
    LabelScheme,
    Protocol,
    Scan,
    find_audio,
    gender_letter,
    require_columns,
)
from peft_ser.corpora.folds import speaker_block_folds

_VOTES = Path("processedResults") / "summaryTable.csv"
_DEMOGRAPHICS = "VideoDemographics.csv"


def _looks_like(root: Path) -> bool:
    return (root / "AudioWAV").is_dir() and (root / _VOTES).is_file()


def _read_csv(path: Path, needed: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows keyed by lower-cased column names, so spelling variants of headers agree."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        require_columns(path, reader.fieldnames, needed)
        return [{k.strip().lower(): v.strip() for k, v in row.items() if k} for row in reader]


def _genders(root: Path) -> dict[str, str]:
    path = root / _DEMOGRAPHICS
    if not path.is_file():
        return {}
    return {
        row["actorid"]: gender_letter(row.get("sex", ""))
        for row in _read_csv(path, ("actorid", "sex"))
    }


def scan(root: Path) -> Scan:
    """One entry per row of the vote table; the audio is ``AudioWAV/<FileName>.wav``."""
    genders = _genders(root)
    entries = []
    for row in _read_csv(root / _VOTES, ("filename", "multimodalvote")):
        name = row["filename"].removesuffix(".wav")
        actor = name.split("_", 1)[0]
        path = os.path.join(root, "AudioWAV", f"{name}.wav")
        entries.append(Entry(name, actor, genders.get(actor, "U"), path, row["multimodalvote"]))
    return Scan(entries, find_audio(root, "AudioWAV/*"))


CORPUS = Corpus(
    name="crema-d",
    title="CREMA-D",
    layout="AudioWAV/<actor>_<sentence>_<emotion>_<level>.wav, processedResults/summaryTable.csv",
    looks_like=_looks_like,
    scan=scan,
    labels=LabelScheme(
        full={**PAPER4_BY_INITIAL, "F": "Fearful", "D": "Disgusted"},
        paper4=PAPER4_BY_INITIAL,
        tie_separator=":",
    ),
    protocols={
        "paper": Protocol(
            "5 contiguous actor folds (19,18,18,18,18 test actors); last ceil(n/5) others dev",
            5,
            speaker_block_folds,
        ),
    },
    top_dirs=("CREMA-D",),
)
