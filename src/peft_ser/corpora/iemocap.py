"""IEMOCAP (``IEMOCAP_full_release``): five sessions of dyadic improvised and scripted dialogs.

Labels come from ``SessionN/dialog/EmoEvaluation/<dialog>.txt``: only the bracketed summary
line of each turn block carries the consensus label; the ``Categorical/`` and other
sub-folders and AppleDouble ``._`` files are ignored. A turn's audio is
``SessionN/sentences/wav/<dialog>/<turn>.wav`` with ``<dialog>`` the turn minus its last
``_`` field (so letter-suffixed dialogs such as ``Ses03M_impro05a`` work unchanged), and the
speaker's gender is the first letter of that last field (``F017``), not the ``F``/``M`` of
the session prefix, which names who wore the motion-capture markers. The summary line ends
with the consensus ratings ``[V, A, D]`` (valence, activation, dominance, 1 to 5), kept as
valence, arousal and dominance.

Votes (`peft_ser.corpora.votes`) come from the external evaluators' categorical lines of the
turn's block, ``C-E2:<TAB>Neutral;<TAB>()`` or, with several categories,
``C-E3:<TAB>Frustration; Anger;<TAB>(comment)``: the categories are the ``;``-separated words
between the colon and the comment's ``(``. ``C-F1``/``C-M1`` lines are the speaker's own
self-evaluation and ``A-…`` lines dimensional ratings: neither is a vote. An evaluator word
becomes its summary code (Neutral ``neu``, Happiness ``hap``, Excited ``exc``, Sadness ``sad``,
Anger ``ang``, Frustration ``fru``, Surprise ``sur``, Fear ``fea``, Disgust ``dis``, Other
``oth``, in any case), so the label set maps it as it maps the consensus; an unknown word is
kept as written (outside every label set: ``other``). A ``C-E`` line that does not start
``C-E<n>:``, or that belongs to no turn (before the first, or after a malformed summary
line), counts no vote and is named in a warning. Sources of these facts: the label
example in CXianRen/AMST ``Doc/dataset/IEMOCAP.md`` (``C-E1:<TAB>Anger;<TAB>()``, ``C-F1``,
``A-E3`` lines) and W-Wu/ERC-SLT22 ``Data preparation/data_prep_process_label.py`` (votes from
``C-E`` lines only; the words Neutral, Happiness, Excited, Sadness and Anger, the paper's four
classes; several words per line, each ending in ``;``). The other words follow the corpus's
category names (Busso et al., 2008); spelt otherwise they still count, as ``other``, which is
where every label set puts those classes' codes but ``full``'s.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from peft_ser.corpora.base import (
    MALFORMED_ROW,
    Corpus,
    Entry,
    LabelScheme,
    Problem,
    Protocol,
    Scan,
    find_audio,
    rating,
)
from peft_ser.corpora.folds import (
    session_folds,
    session_protocol,
    session_speaker_dev_protocol,
)
from peft_ser.corpora.votes import annotator_votes, first_answers, unread_note

_SUMMARY = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)\s+\[")
_VAD = re.compile(r"\[\s*([-\d.]+)\s*,\s*([-\d.]+)\s*,\s*([-\d.]+)\s*\]\s*$")
"""The summary line's trailing ``[V, A, D]``: valence, activation (arousal), dominance."""
_TURN = re.compile(r"^Ses(\d\d)[FM]_.+_([FM])\d+$")
_EVALUATOR = re.compile(r"^C-(E\d+):([^(]*)")
"""An external evaluator's categorical line: the evaluator, then the categories up to the
comment's ``(``."""
_WORDS = {
    "neutral": "neu", "happiness": "hap", "excited": "exc", "sadness": "sad", "anger": "ang",
    "frustration": "fru", "surprise": "sur", "fear": "fea", "disgust": "dis", "other": "oth",
}  # fmt: skip
"""An evaluator's category word (case-folded) → the summary line's code for it."""


def _looks_like(root: Path) -> bool:
    return any(root.glob("Session*/dialog/EmoEvaluation"))


def _label_files(root: Path) -> list[Path]:
    files = root.glob("Session*/dialog/EmoEvaluation/*.txt")
    return sorted(path for path in files if path.is_file() and not path.name.startswith("."))


@dataclass
class _Turn:
    """A summary line's entry, and the evaluators' answers read so far in its block."""

    entry: Entry
    answers: list[tuple[str, list[str]]] = field(default_factory=list)

    def with_votes(self) -> Entry:
        if not self.answers:
            return self.entry
        return replace(self.entry, raw_votes=annotator_votes(first_answers(self.answers)))


def _parse_file(root: Path, path: Path) -> tuple[list[Entry], list[Problem], list[str]]:
    """The file's entries with their votes, its malformed summary lines, and the evaluator
    lines that could not be read (``<file> line <n>: <text>``)."""
    turns: list[_Turn] = []
    problems, unread = [], []
    current: _Turn | None = None
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("C-E"):
            answer = _evaluator_answer(line)
            if answer is None or current is None:
                unread.append(f"{path} line {number}: {line.strip()!r}")
            else:
                current.answers.append(answer)
            continue
        match = _SUMMARY.match(line)
        if match is None:
            continue
        current = None
        turn, label = match.groups()
        name = _TURN.match(turn)
        if name is None:
            problems.append(
                Problem(turn, str(path), MALFORMED_ROW, "turn name not Ses##X_..._F###")
            )
            continue
        session, gender = name.groups()
        dialog = turn.rsplit("_", 1)[0]
        audio = os.path.join(
            root, f"Session{int(session)}", "sentences", "wav", dialog, f"{turn}.wav"
        )
        speaker = f"Ses{session}{gender}"
        valence, arousal, dominance = _ratings(line)
        current = _Turn(
            Entry(
                turn, speaker, gender, audio, label, f"Session{int(session)}",
                arousal=arousal, valence=valence, dominance=dominance,
            )
        )  # fmt: skip
        turns.append(current)
    return [turn.with_votes() for turn in turns], problems, unread


def _evaluator_answer(line: str) -> tuple[str, list[str]] | None:
    """``(evaluator, category codes)`` of a ``C-E<n>:`` line; None when it is not one."""
    match = _EVALUATOR.match(line)
    if match is None:
        return None
    evaluator, categories = match.groups()
    words = [word.strip() for word in categories.split(";")]
    return evaluator, [_WORDS.get(word.casefold(), word) for word in words if word]


def _ratings(line: str) -> tuple[float | None, float | None, float | None]:
    """``(valence, arousal, dominance)`` of a summary line, in the file's ``[V, A, D]`` order
    (all ``None`` when the bracket is absent or does not hold three numbers)."""
    match = _VAD.search(line)
    if match is None:
        return None, None, None
    valence, arousal, dominance = (rating(value) for value in match.groups())
    return valence, arousal, dominance


def scan(root: Path) -> Scan:
    """Every summary line of the EmoEvaluation files with its evaluators' votes, and every
    sentence wav on disk."""
    result = Scan([], find_audio(root, "Session*/sentences/wav/*/*.wav"))
    unread: list[str] = []
    for path in _label_files(root):
        entries, problems, lines = _parse_file(root, path)
        result.entries += entries
        result.problems += problems
        unread += lines
    result.notes += unread_note("IEMOCAP evaluator lines (not C-E<n>: …, or of no turn)", unread)
    return result


CORPUS = Corpus(
    name="iemocap",
    title="IEMOCAP",
    layout="Session1 … Session5, each with dialog/EmoEvaluation/*.txt and sentences/wav/<dialog>/",
    looks_like=_looks_like,
    scan=scan,
    labels=LabelScheme(
        full={
            "neu": "Neutral",
            "ang": "Angry",
            "sad": "Sad",
            "hap": "Happy",
            "exc": "Excited",
            "fru": "Frustrated",
            "sur": "Surprised",
            "fea": "Fearful",
            "dis": "Disgusted",
        },
        paper4={"neu": "Neutral", "ang": "Angry", "sad": "Sad", "hap": "Happy", "exc": "Happy"},
        other=frozenset({"oth"}),
        no_agreement=frozenset({"xxx"}),
    ),
    protocols={
        "paper": session_protocol(5),
        "improvised": Protocol(
            "the paper's folds over improvised dialogs only (scripted excluded)",
            5,
            session_folds,
            keep=lambda entry: "_impro" in entry.key,
        ),
        "loso-speaker-dev": session_speaker_dev_protocol(5),
    },
    top_dirs=("IEMOCAP_full_release",),
    attribute_scale="1-5 (the summary line's [V, A, D]: 1 = negative, calm, weak)",
    votes="the C-E<n> evaluator lines of EmoEvaluation/*.txt",
)
