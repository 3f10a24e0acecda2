"""CREMA-D: 7,442 clips of 91 actors (``1001``–``1091``), labelled by crowd votes.

The paper labels each clip by ``MultiModalVote`` in ``processedResults/summaryTable.csv``
(which can differ from the emotion in the file name) and drops ties such as ``N:S``. The
table's first column is unnamed and every field is quoted; the file-name column is spelled
``FileName`` in the file and ``fileName`` in the README, so it is looked up case-insensitively.
Gender comes from ``VideoDemographics.csv`` (``U`` when the file is absent).

Votes (`peft_ser.corpora.votes`) come from ``finishedResponses.csv`` when the corpus folder
holds it: one row per rater response, ``clipName`` the clip, ``localid`` the rater,
``queryType`` what was shown (1 voice only, 2 face only, 3 audio-visual) and ``respEmo`` the
emotion chosen, one of the letters A D F H N S (the codes of the vote table). Only the
audio-visual responses count, the ones ``MultiModalVote``, the label, tallies, so the votes and
the label agree; a rater answering twice for a clip counts once. The owners' tabulation also
drops responses whose first click came after 10 s (from ``finishedEmoResponses.csv``); peft-ser
does not, so a clip can count a few votes more than its ``MultiModalVote`` did. A row without a
clip or a rater, or whose ``queryType`` is no number, counts no vote, and a file that cannot be
read or lacks a column gives no votes: both are named in a warning, never fatal, since the file
is optional. Sources: CheyneyComputerScience/CREMA-D ``README.md`` ("Finished Responses
Columns": localid, pos, ans, ttr, queryType, numTries, clipNum, questNum, subType, clipName,
sessionNums, respEmo, respLevel, dispEmo, dispVal, dispLevel), ``processFinishedResponses.R``
(read with ``row.names='X'``: a first, unnamed column of row numbers; the 10-s filter) and
``tabulateVotesV2.r`` (respEmo letters A D F H N S; query types 1, 2, 3 as voice, face,
multimodal).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from peft_ser.corpora.base import (
    PAPER4_BY_INITIAL,
    Corpus,
    CorpusError,
    Entry,
    LabelScheme,
    Protocol,
    Scan,
    find_audio,
    gender_letter,
    require_columns,
)
from peft_ser.corpora.folds import speaker_block_folds
from peft_ser.corpora.votes import annotator_votes, first_answers, unread_note

_VOTES = Path("processedResults") / "summaryTable.csv"
_DEMOGRAPHICS = "VideoDemographics.csv"
_RESPONSES = "finishedResponses.csv"
_RESPONSE_COLUMNS = ("clipname", "localid", "querytype", "respemo")
_AUDIO_VISUAL = 3
"""The ``queryType`` of the responses that ``MultiModalVote`` tallies."""


def _looks_like(root: Path) -> bool:
    return (root / "AudioWAV").is_dir() and (root / _VOTES).is_file()


def _read_csv(path: Path, needed: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows keyed by lower-cased column names, so spelling variants of headers agree."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        require_columns(path, reader.fieldnames, needed)
        return [
            {k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader
        ]


def _genders(root: Path) -> dict[str, str]:
    path = root / _DEMOGRAPHICS
    if not path.is_file():
        return {}
    return {
        row["actorid"]: gender_letter(row.get("sex", ""))
        for row in _read_csv(path, ("actorid", "sex"))
    }


def _responses(root: Path) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Each clip's votes from the audio-visual rows of ``finishedResponses.csv`` (none
    without the file), and the warnings about what could not be read."""
    path = root / _RESPONSES
    if not path.is_file():
        return {}, []
    try:
        rows = _read_csv(path, _RESPONSE_COLUMNS)
    except UnicodeDecodeError as error:
        return {}, [f"{path}: no votes read (not UTF-8 text: {error.reason} at byte {error.start})"]
    except OSError as error:
        return {}, [f"{path}: no votes read ({error.strerror})"]
    except (CorpusError, csv.Error) as error:
        return {}, [f"{path}: no votes read ({error})"]
    answers: dict[str, list[tuple[str, list[str]]]] = {}
    unread = []
    for number, row in enumerate(rows, 1):
        rater, query = row["localid"], row["querytype"]
        clip = os.path.splitext(os.path.basename(row["clipname"]))[0]
        if not clip or not rater or not query.isdigit():
            unread.append(f"{path} row {number}: clipName {clip!r}, localid {rater!r}, "
                          f"queryType {query!r}")  # fmt: skip
        elif int(query) == _AUDIO_VISUAL:
            emotion = row["respemo"]
            answers.setdefault(clip, []).append((rater, [emotion] if emotion else []))
    votes = {clip: annotator_votes(first_answers(pairs)) for clip, pairs in answers.items()}
    return votes, unread_note("CREMA-D response rows (no clipName, localid or queryType)", unread)


def scan(root: Path) -> Scan:
    """One entry per row of the vote table, with its votes; the audio is
    ``AudioWAV/<FileName>.wav``."""
    genders = _genders(root)
    votes, notes = _responses(root)
    entries = []
    for row in _read_csv(root / _VOTES, ("filename", "multimodalvote")):
        name = row["filename"].removesuffix(".wav")
        actor = name.split("_", 1)[0]
        path = os.path.join(root, "AudioWAV", f"{name}.wav")
        entries.append(
            Entry(
                name, actor, genders.get(actor, "U"), path, row["multimodalvote"],
                raw_votes=votes.get(name),
            )
        )  # fmt: skip
    return Scan(entries, find_audio(root, "AudioWAV/*"), notes=notes)


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
    votes="the audio-visual responses of finishedResponses.csv",
)
