"""MSP-IMPROV: six sessions of improvised dyadic recordings, one female and one male actor each.

The label file ships as ``Evalution.txt`` (sic); ``Evaluation.txt`` is accepted too, at the
root or one folder below. Each blank-line-separated block starts with the consensus line
``UTD-IMPROV-S01A-F01-P-FM01.avi; N; A:2.4; V:3.0; D:2.8 ; N:5;`` (consensus class, then
the mean arousal, valence and dominance, 1 to 5, and the number of raters). The audio of
``UTD-IMPROV-<id>.avi`` is ``[Audio/]session<N>/<S01A>/<P>/MSP-IMPROV-<id>.wav``, where
``F01`` names the speaker (gender + session number).

The lines after the consensus line are the raters', ``<rater id>; <primary emotion>;
<other emotions>; A:x; V:x; D:x; N:x;``, and give the votes (`peft_ser.corpora.votes`): each
rater's primary emotion, one of Angry, Happy, Sad, Neutral and Other, becomes the consensus
letter for it (A, H, S, N, O; in any case), so the label set maps it as it maps the consensus;
an unknown word is kept as written (``other``) and an empty one is no choice. A rater listed
twice for one clip counts once (the file repeats some rater lines). A line without a rater id
and a ``;`` after it, or naming a clip (a block whose blank line is missing), counts no vote
and is named in a warning. Sources: Strong-AI-Lab/emotion ``datasets/MSP-IMPROV/process.py``
(rater lines ``^([A-Za-z0-9-_]+); (Sad|Angry|Happy|Neutral|Other); (.*); A:…; V:…; D:…;
N:…;$`` in one version, the label's first letter as the code in another; repeated
(clip, rater) pairs dropped as copies).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from peft_ser.corpora.base import (
    MALFORMED_ROW,
    PAPER4_BY_INITIAL,
    Corpus,
    Entry,
    LabelScheme,
    Problem,
    Scan,
    find_audio,
    rating,
    require_file,
)
from peft_ser.corpora.folds import session_protocol, session_speaker_dev_protocol
from peft_ser.corpora.votes import annotator_votes, first_answers, unread_note

_LABEL_FILES = ("Evalution.txt", "Evaluation.txt")
_RATING_KEYS = {"A": "arousal", "V": "valence", "D": "dominance"}
_CONSENSUS = re.compile(r"^UTD-IMPROV-((S\d+[A-Z])-(([FM])(\d+))-([A-Z])-([A-Z]+\d+))\.avi$")
_PRIMARY = {"angry": "A", "happy": "H", "sad": "S", "neutral": "N", "other": "O"}
"""A rater's primary emotion (case-folded) → the consensus letter for it."""


def _label_file(root: Path) -> Path | None:
    for folder in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        for name in _LABEL_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def _audio_base(root: Path) -> Path:
    return root / "Audio" if (root / "Audio").is_dir() else root


def _blocks(text: str) -> list[list[str]]:
    """The lines of every blank-line-separated block, stripped, first the consensus line."""
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    return [
        [line.strip() for line in block.strip().splitlines()] for block in blocks if block.strip()
    ]


def scan(root: Path) -> Scan:
    """One entry per consensus line, with its raters' votes; audio under ``Audio/`` or
    directly under the root."""
    label_file = require_file(_label_file(root), f"{root}/Evalution.txt or Evaluation.txt")
    audio_base = _audio_base(root)
    result = Scan([], find_audio(audio_base, "session*/*/*/*"))
    unread: list[str] = []
    for line, *raters in _blocks(label_file.read_text(encoding="utf-8", errors="replace")):
        fields = [field.strip() for field in line.split(";")]
        match = _CONSENSUS.match(fields[0])
        if match is None or len(fields) < 2:
            result.problems.append(
                Problem(fields[0], str(label_file), MALFORMED_ROW, "not a consensus line")
            )
            continue
        uid, sentence, speaker, gender, session, kind, _ = match.groups()
        key = f"MSP-IMPROV-{uid}"
        path = os.path.join(audio_base, f"session{int(session)}", sentence, kind, f"{key}.wav")
        ratings = _ratings(fields[2:])
        answers = []
        for rater in raters:
            answer = _rater_answer(rater)
            if answer is None:
                unread.append(f"{label_file} ({key}): {rater!r}")
            else:
                answers.append(answer)
        result.entries.append(
            Entry(
                key, speaker, gender, path, fields[1], f"Session{int(session)}",
                arousal=ratings["arousal"], valence=ratings["valence"],
                dominance=ratings["dominance"],
                raw_votes=annotator_votes(first_answers(answers)) if answers else None,
            )
        )  # fmt: skip
    result.notes += unread_note("MSP-IMPROV rater lines (not <rater>; <emotion>; …)", unread)
    return result


def _rater_answer(line: str) -> tuple[str, list[str]] | None:
    """``(rater, [code])`` of a rater line, ``(rater, [])`` when its primary emotion is empty;
    None for a line without a rater id and a ``;`` after it, or one naming a clip."""
    rater, separator, rest = (part.strip() for part in line.partition(";"))
    if not rater or not separator or rater.endswith(".avi"):
        return None
    word = rest.split(";", 1)[0].strip()
    return rater, [_PRIMARY.get(word.casefold(), word)] if word else []


def _ratings(fields: list[str]) -> dict[str, float | None]:
    """Arousal, valence and dominance from the ``A:2.4``, ``V:3.0``, ``D:2.8`` fields (in any
    order; a missing or non-numeric one is ``None``)."""
    found: dict[str, float | None] = dict.fromkeys(_RATING_KEYS.values())
    for field in fields:
        key, _, value = field.partition(":")
        if key.strip() in _RATING_KEYS:
            found[_RATING_KEYS[key.strip()]] = rating(value)
    return found


CORPUS = Corpus(
    name="msp-improv",
    title="MSP-IMPROV",
    layout="Evalution.txt (or Evaluation.txt) and [Audio/]session<N>/<S01A>/<P|R|S|T>/*.wav",
    looks_like=lambda root: _label_file(root) is not None,
    scan=scan,
    labels=LabelScheme(
        full=PAPER4_BY_INITIAL,
        paper4=PAPER4_BY_INITIAL,
        other=frozenset({"O"}),
        no_agreement=frozenset({"X"}),
    ),
    protocols={
        "paper": session_protocol(6),
        "loso-speaker-dev": session_speaker_dev_protocol(6),
    },
    top_dirs=("MSP-IMPROV",),
    attribute_scale="1-5 (A, V, D of the consensus line: 1 = calm, negative, weak)",
    votes="the rater lines after each consensus line of Evalution.txt",
)
