"""MSP-Podcast: podcast segments with crowd labels and an official speaker-independent split.

Labels are in ``Labels/labels_consensus.csv`` (``labels_concensus.csv`` in releases 1.6 and
1.8), audio in flat ``Audios/``. The protocol is the official split: ``Train``, the dev set
(``Development``, called ``Validation`` in older releases) and ``Test1``; ``Test2``/``Test3``
utterances stay in the manifest but in no fold. Unknown speakers keep the id ``Unknown``.
The consensus attribute ratings ``EmoAct``, ``EmoVal`` and ``EmoDom`` (1 to 7) are kept as
arousal, valence and dominance; a row without them is unrated.

The Odyssey 2024 challenge protocol (``--protocol challenge --labels challenge8``, facts and
sources in docs/corpora.md): the eight classes A H S U F D C N under the challenge's names and
in its baseline's class order, no-agreement X and other O excluded, macro-F1 the headline;
fold ``test1`` scores on Test1, and fold ``test3`` on Test3 (the class-balanced set) when the
release lists Test3 utterances.

Each row's ``raw_votes`` are the annotators' primary choices from the release's detailed label
file (`peft_ser.corpora.msp_podcast_votes`), ``None`` without one.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from peft_ser.corpora.base import (
    PAPER4_BY_INITIAL,
    Corpus,
    Entry,
    FoldPlan,
    LabelScheme,
    LabelSet,
    Protocol,
    Scan,
    find_audio,
    gender_letter,
    rating,
    require_columns,
    require_file,
    stem,
)
from peft_ser.corpora.folds import official_split
from peft_ser.corpora.msp_podcast_votes import read_detailed_votes
from peft_ser.data.manifest import Utterance

_LABEL_FILES = ("labels_consensus.csv", "labels_concensus.csv")
_COLUMNS = ("FileName", "EmoClass", "SpkrID", "Gender", "Split_Set")
_TRAIN, _DEV = ("Train",), ("Development", "Validation")
CHALLENGE_CLASSES = {
    "A": "Angry",
    "S": "Sad",
    "H": "Happy",
    "U": "Surprise",
    "F": "Fear",
    "D": "Disgust",
    "C": "Contempt",
    "N": "Neutral",
}
"""The Odyssey 2024 challenge's eight classes: codes, names and class order of its baseline."""


def _label_file(root: Path) -> Path | None:
    found = [root / "Labels" / name for name in _LABEL_FILES if (root / "Labels" / name).is_file()]
    return found[0] if found else None


def _looks_like(root: Path) -> bool:
    return _label_file(root) is not None and (root / "Audios").is_dir()


def scan(root: Path) -> Scan:
    """One entry per row of the consensus label file, with its annotators' votes."""
    label_file = require_file(_label_file(root), f"{root}/Labels/labels_consensus.csv")
    detailed = read_detailed_votes(root / "Labels")
    entries = []
    with open(label_file, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        require_columns(label_file, reader.fieldnames, _COLUMNS)
        for row in reader:
            name = row["FileName"].strip()
            speaker = row["SpkrID"].strip() or "Unknown"
            gender = gender_letter(row["Gender"])
            path = os.path.join(root, "Audios", name)
            label = row["EmoClass"].strip()
            entries.append(
                Entry(
                    stem(name), speaker, gender, path, label, row["Split_Set"].strip(),
                    arousal=rating(row.get("EmoAct")),
                    valence=rating(row.get("EmoVal")),
                    dominance=rating(row.get("EmoDom")),
                    raw_votes=detailed.votes.get(name) if detailed else None,
                )
            )  # fmt: skip
    problems = detailed.problems if detailed else []
    return Scan(entries, find_audio(root, "Audios/*"), problems)


def _challenge_folds(utterances: Sequence[Utterance], n_folds: int) -> FoldPlan:
    """Fold ``test1`` (Train / Development or Validation / Test1), and fold ``test3`` with
    the same train and dev when the release lists Test3 utterances."""
    folds = []
    for test in ("Test1", "Test3"):
        (fold,) = official_split(_TRAIN, _DEV, (test,))(utterances, n_folds).folds
        if test == "Test1" or fold.test:
            folds.append(replace(fold, name=test.lower()))
    return FoldPlan(folds)


CORPUS = Corpus(
    name="msp-podcast",
    title="MSP-Podcast",
    layout="Labels/labels_consensus.csv (or labels_concensus.csv) and Audios/*.wav",
    looks_like=_looks_like,
    scan=scan,
    labels=LabelScheme(
        full={
            **PAPER4_BY_INITIAL,
            "U": "Surprised",
            "F": "Fearful",
            "D": "Disgusted",
            "C": "Contemptuous",
        },
        paper4=PAPER4_BY_INITIAL,
        other=frozenset({"O"}),
        no_agreement=frozenset({"X"}),
        extra_sets={
            "challenge8": LabelSet(
                tuple(CHALLENGE_CLASSES.values()),
                CHALLENGE_CLASSES,
                "the Odyssey 2024 challenge's 8 classes",
            )
        },
    ),
    protocols={
        "paper": Protocol(
            "official split: Train / Development (or Validation) / Test1",
            1,
            official_split(_TRAIN, _DEV, ("Test1",)),
        ),
        "challenge": Protocol(
            "Odyssey 2024 challenge: Train / Development (or Validation), tested on Test1 and "
            "on Test3 where present; headline macro-F1 (classes), mean CCC (attributes)",
            1,
            _challenge_folds,
            headline="macro_f1",
        ),
    },
    top_dirs=("MSP-PODCAST", "MSP-Podcast"),
    attribute_scale="1-7 (EmoAct, EmoVal, EmoDom: 1 = very calm, negative, weak)",
)
