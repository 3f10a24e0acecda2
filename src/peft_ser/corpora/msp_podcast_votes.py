"""MSP-Podcast's per-annotator labels → each segment's votes in the corpus's codes.

The release ships every rater's answer next to the consensus in ``Labels/``: the readme of
release 1.12 (reproduced in an OpenReview submission's supplementary code,
``dataset_preprocessing_code/msp-podcast/readme.txt``) lists ``labels_detailed.csv``
("detailed individual annotations in CSV format") and ``labels_detailed.json`` (the same in
JSON). No public document from the corpus owners
gives their columns, so the layouts below are read from public code that parses them, and a
layout only one such reader shows is marked unverified. The CSV is read when present, the
JSON otherwise.

* ``labels_detailed.csv`` with one row per annotation and the columns ``FileName`` and
  ``EmoClass_Major`` (the rater's primary emotion, a word: ``Angry``, ``Neutral``, …), beside
  ``EmoClass_Second`` (the secondary emotions, comma-separated), ``EmoAct``, ``EmoVal``,
  ``EmoDom`` and a rater column (``WorkerID`` in release 2.0, ``Workers`` in 1.6). Read from
  public MSP-Podcast loaders that the code index shows without their repository: one renames
  exactly these columns for releases 1.6 and 2.0, two others count ``EmoClass_Major`` per
  ``FileName`` to build 8-class vote distributions, one from ``MSP-PODCAST_v2.0/Labels``.
* ``labels_detailed.csv`` with the columns ``FileName`` and ``EmoDetail``, each row one rater
  packed as ``WORKER00001; Angry; Angry,Frustrated; A:3.0; V:2.0; D:4.0;`` (rater; primary;
  secondary; ratings): releases 1.7 to 1.12 according to the one public loader that parses
  it (a regular expression over ``EmoDetail``); unverified against a release.
* ``labels_detailed.json``: ``{"<FileName>": {"<rater>": {"EmoClass_Major": "Happy",
  "EmoClass_Second": ..., "EmoAct": ..., ...}, ...}}`` (Strong-AI-Lab/emotion,
  ``datasets/MSP-PODCAST/process.py``, and a 1.6 script reading
  ``MSP-PODCAST-Publish-1.6/label/labels_detailed.json``). The lab documents its sibling
  corpus MSP-Face with ``{"<FileName>": {"Workers": [{"Name": "WORKER0000013",
  "EmoClass_Major": "Happy", "EmoClass_Second": "Happy,Concerned,Excited", ...}]}}``
  (3loi/MSP_Face, ``README.md``, "Emotional Labels"); that shape is accepted too.

``EmoClass_Major`` holds the eight emotions as words (``Angry``, ``Sad``, ``Happy``,
``Surprise``, ``Fear``, ``Disgust``, ``Contempt``, ``Neutral``) and ``Other`` answers whose
text starts with ``Other`` (Strong-AI-Lab/emotion maps every ``Other…`` to other; another
loader lists ``Other-Concerned``, ``Other-Annoyed``, …). Each word becomes the corpus's code
(A S H U F D C N, O for other), matched by its start in any case so that spellings such as
``Anger`` or ``Surprised`` (unverified) land on the same code; a bare code is accepted as it
is.

Only the primary choice is a vote. The corpus paper ("The MSP-Podcast Corpus", arXiv
2509.09791, abstract) calls it the "single dominant emotion" and the secondary ones the
"multiple emotions perceived"; the consensus ``EmoClass`` (and with it the classes the
challenge baselines train on, msplabresearch/MSP-Podcast_Challenge_IS2025,
``process_labels_for_categorical.py``) comes from the primary choices (that it is their
plurality, a tie giving ``X``, is unverified here), and the public loaders above build their
8-class distributions from ``EmoClass_Major``. The secondary choices answer another question
(every emotion heard, from a longer list with free-text others) and are left out. So every
annotator weighs 1 on one code (`peft_ser.corpora.votes.annotator_votes`).

A release without a detailed label file gives no votes and no error. A row that cannot be read
(no file name, no or an unknown primary word, a garbled line) is one `Problem` naming the
label file and its line; its vote is left out and the segment keeps the others'.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from peft_ser.corpora.base import MALFORMED_ROW, Problem, stem
from peft_ser.corpora.votes import annotator_votes

DETAILED_FILES = ("labels_detailed.csv", "labels_detailed.json")
"""The per-annotator label files in ``Labels/``, in the order they are looked for."""
CODES = frozenset("ASHUFDCNO")
"""The codes a primary choice can take: the eight emotions, and O for other."""
_WORDS = (
    ("ang", "A"), ("sad", "S"), ("happ", "H"), ("surpris", "U"), ("fear", "F"),
    ("disgust", "D"), ("contempt", "C"), ("neutral", "N"), ("other", "O"),
)  # fmt: skip
"""Starts of the primary-emotion words and their codes (``Angry``/``Anger`` → A, …)."""


def primary_code(word: str) -> str | None:
    """The corpus code of an ``EmoClass_Major`` answer, or None for a word none starts."""
    text = word.strip()
    if text.upper() in CODES and len(text) == 1:
        return text.upper()
    lower = text.lower()
    return next((code for start, code in _WORDS if lower.startswith(start)), None)


@dataclass
class DetailedVotes:
    """The votes read from a detailed label file: each ``FileName``'s summed annotator
    weights per code, and the rows that could not be read."""

    votes: dict[str, dict[str, float]]
    problems: list[Problem] = field(default_factory=list)


def read_detailed_votes(labels: Path) -> DetailedVotes | None:
    """The votes of the first detailed label file in the folder ``labels``; None without one."""
    for name in DETAILED_FILES:
        path = labels / name
        if path.is_file():
            return _read(path)
    return None


Row = tuple[str, str, str, str]
"""``(FileName, primary word, where, garbled)``: an annotation as a reader found it, ``where``
its place in the file (``line 7``), ``garbled`` why it could not be read (or empty)."""


def _read(path: Path) -> DetailedVotes:
    """Each file's primary choices from ``path``, turned into votes; a file that cannot be
    read at all is one problem and no votes."""
    choices: dict[str, list[list[str]]] = {}
    problems: list[Problem] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = _json_rows(handle) if path.suffix == ".json" else _csv_rows(handle)
            for name, word, where, garbled in rows:
                code = primary_code(word)
                problem = garbled or _row_problem(name, word, code)
                if problem:
                    problems.append(_problem(path, problem, where, name))
                else:
                    choices.setdefault(name, []).append([str(code)])
    except (OSError, UnicodeDecodeError, csv.Error, json.JSONDecodeError, _Unreadable) as error:
        problems.append(_problem(path, _why(error)))
        return DetailedVotes({}, problems)
    votes = {name: annotator_votes(chosen) for name, chosen in choices.items()}
    return DetailedVotes(votes, problems)


def _row_problem(name: str, word: str, code: str | None) -> str:
    """Why an annotation gives no vote, or empty when it gives one."""
    if not name:
        return "no FileName"
    if not word.strip():
        return "no primary emotion (EmoClass_Major)"
    if code is None:
        return f"primary emotion {word.strip()!r} is not one the corpus uses"
    return ""


class _Unreadable(Exception):
    """The file as a whole has no layout the reader knows."""


def _why(error: Exception) -> str:
    """What stopped a whole detailed file from being read, in a few words."""
    if isinstance(error, OSError):
        return f"cannot be read ({error.strerror or error}); no votes"
    if isinstance(error, UnicodeDecodeError):
        return "is not UTF-8 text; no votes"
    if isinstance(error, json.JSONDecodeError):
        return f"is not JSON ({error}); no votes"
    if isinstance(error, csv.Error):
        return f"is not CSV ({error}); no votes"
    return f"{error}; no votes"


def _problem(path: Path, problem: str, where: str = "", name: str = "") -> Problem:
    """A detailed-label row (or the whole file, without ``where``) that gives no vote."""
    if where:
        problem = f"{where}: {problem}; this vote is left out"
    key = stem(name) if name else ""
    return Problem(key, str(path), MALFORMED_ROW, f"{path.name} {problem}")


def _column(header: Iterable[str] | None, wanted: str) -> str | None:
    """The header's spelling of column ``wanted``, matched in any case and spacing."""
    return next((name for name in header or [] if name.strip().lower() == wanted.lower()), None)


def _csv_rows(handle: Iterable[str]) -> Iterator[Row]:
    """The annotations of a detailed CSV: one a row, its primary choice in ``EmoClass_Major``
    or in the second field of ``EmoDetail``."""
    reader = csv.DictReader(handle)
    header = reader.fieldnames
    name_column = _column(header, "FileName")
    major, packed = _column(header, "EmoClass_Major"), _column(header, "EmoDetail")
    if name_column is None or (major is None and packed is None):
        raise _Unreadable(
            f"has no FileName with EmoClass_Major or EmoDetail column (header {header or []})"
        )
    for row in reader:
        where = f"line {reader.line_num}"
        name = (row.get(name_column) or "").strip()
        if None in row or None in row.values():
            yield name, "", where, "not as many fields as the header"
        elif major is not None:
            yield name, row[major], where, ""
        else:
            fields = row[str(packed)].split(";")
            yield name, fields[1] if len(fields) > 1 else "", where, ""


def _json_rows(handle: Iterable[str]) -> Iterator[Row]:
    """The annotations of a detailed JSON object, each placed by file name and rater."""
    document = json.loads("".join(handle))
    if not isinstance(document, dict):
        raise _Unreadable("is not a JSON object of file names")
    for name, raters in document.items():
        for rater, answer in _raters(raters):
            where = f"{name!r} rater {rater}"
            word = answer.get("EmoClass_Major") if isinstance(answer, Mapping) else None
            if isinstance(word, str):
                yield name.strip(), word, where, ""
            else:
                yield name.strip(), "", where, "no EmoClass_Major text"


def _raters(raters: object) -> Iterator[tuple[str, object]]:
    """``(rater, answer)`` of a file's entry: ``{rater: answer}``, ``{"Workers": [answer]}``
    (answers naming their rater under ``Name``) or a bare list of answers."""
    if isinstance(raters, Mapping) and isinstance(raters.get("Workers"), list):
        raters = raters["Workers"]
    if isinstance(raters, Mapping):
        yield from ((str(rater), answer) for rater, answer in raters.items())
    elif isinstance(raters, list):
        for index, answer in enumerate(raters, 1):
            named = answer.get("Name") if isinstance(answer, Mapping) else None
            yield (str(named) if named else f"#{index}"), answer
    else:
        yield "?", raters
