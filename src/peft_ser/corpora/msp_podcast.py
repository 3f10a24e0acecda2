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

The Interspeech 2025 challenge protocol (``--protocol challenge2025 --labels challenge8``):
the same eight classes in the same order, training on ``Train`` and picking the epoch on
``Development``, as the organisers' baseline does (msplabresearch/MSP-Podcast_Challenge_IS2025,
``train_eval_files/train_cat_ser.py``, ``utils/data/podcast.py``). Its test set is
unlabelled: the baseline's evaluation script takes every file of the audio folder whose name
contains ``test3`` (``train_eval_files/eval_cat_ser.py``) and writes scores for the organisers
to rank by macro-F1. A prepared corpus holds labelled utterances only, so its one fold
``development`` scores on the Development set (test = dev, the labelled score the challenge's
papers report), and ``peft-ser predict <Audios>/*test3* --format challenge`` writes the
submission (`peft_ser.inference.challenge`). Test3 files without a label row are reported as
``unlabelled_audio``; rows of other splits stay in the manifest, in no fold.

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
from peft_ser.data.manifest import Fold, Utterance

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
"""The eight classes of the MSP-Podcast challenges (Odyssey 2024, Interspeech 2025): codes,
names and class order of their baselines (for 2025: ``process_labels_for_categorical.py``)."""


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


def _development_fold(utterances: Sequence[Utterance], n_folds: int) -> FoldPlan:
    """The Interspeech 2025 challenge: one fold ``development`` that trains on Train, picks its
    epoch on Development (or Validation) and is scored there too, the challenge's only
    labelled evaluation set (its test set has no labels here)."""
    train = [u.key for u in utterances if u.session in _TRAIN]
    dev = [u.key for u in utterances if u.session in _DEV]
    return FoldPlan([Fold("development", train, dev, list(dev))])


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
                "the MSP-Podcast challenges' 8 classes (Odyssey 2024, Interspeech 2025)",
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
        "challenge2025": Protocol(
            "Interspeech 2025 challenge: Train, the epoch picked on Development (or "
            "Validation) and scored there (test = dev; the unlabelled test files are scored "
            "by the organisers: predict --format challenge); headline macro-F1",
            1,
            _development_fold,
            headline="macro_f1",
        ),
    },
    top_dirs=("MSP-PODCAST", "MSP-Podcast"),
    attribute_scale="1-7 (EmoAct, EmoVal, EmoDom: 1 = very calm, negative, weak)",
    votes="the primary choices of Labels/labels_detailed.csv or .json (each rater's EmoClass)",
)
