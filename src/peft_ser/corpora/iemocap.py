"""IEMOCAP (``IEMOCAP_full_release``): five sessions of dyadic improvised and scripted dialogs.

Labels come from ``SessionN/dialog/EmoEvaluation/<dialog>.txt``: only the bracketed summary
line of each turn block carries the consensus label; evaluator lines, the ``Categorical/``
and other sub-folders, and AppleDouble ``._`` files are ignored. A turn's audio is
``SessionN/sentences/wav/<dialog>/<turn>.wav`` with ``<dialog>`` the turn minus its last
``_`` field (so letter-suffixed dialogs such as ``Ses03M_impro05a`` work unchanged), and the
speaker's gender is the first letter of that last field (``F017``), not the ``F``/``M`` of
the session prefix, which names who wore the motion-capture markers. The summary line ends
with the consensus ratings ``[V, A, D]`` (valence, activation, dominance, 1 to 5), kept as
valence, arousal and dominance.
"""

from __future__ import annotations

import os
import re
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

_SUMMARY = re.compile(r"^\[\s*[\d.]+\s*-\s*[\d.]+\s*\]\s+(\S+)\s+(\S+)\s+\[")
_VAD = re.compile(r"\[\s*([-\d.]+)\s*,\s*([-\d.]+)\s*,\s*([-\d.]+)\s*\]\s*$")
"""The summary line's trailing ``[V, A, D]``: valence, activation (arousal), dominance."""
_TURN = re.compile(r"^Ses(\d\d)[FM]_.+_([FM])\d+$")


def _looks_like(root: Path) -> bool:
    return any(root.glob("Session*/dialog/EmoEvaluation"))


def _label_files(root: Path) -> list[Path]:
    files = root.glob("Session*/dialog/EmoEvaluation/*.txt")
    return sorted(path for path in files if path.is_file() and not path.name.startswith("."))


def _parse_file(root: Path, path: Path) -> tuple[list[Entry], list[Problem]]:
    entries, problems = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = _SUMMARY.match(line)
        if match is None:
            continue
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
        entries.append(
            Entry(
                turn, speaker, gender, audio, label, f"Session{int(session)}",
                arousal=arousal, valence=valence, dominance=dominance,
            )
        )  # fmt: skip
    return entries, problems


def _ratings(line: str) -> tuple[float | None, float | None, float | None]:
    """``(valence, arousal, dominance)`` of a summary line, in the file's ``[V, A, D]`` order
    (all ``None`` when the bracket is absent or does not hold three numbers)."""
    match = _VAD.search(line)
    if match is None:
        return None, None, None
    valence, arousal, dominance = (rating(value) for value in match.groups())
    return valence, arousal, dominance


def scan(root: Path) -> Scan:
    """Every summary line of the EmoEvaluation files, and every sentence wav on disk."""
    result = Scan([], find_audio(root, "Session*/sentences/wav/*/*.wav"))
    for path in _label_files(root):
        entries, problems = _parse_file(root, path)
        result.entries += entries
        result.problems += problems
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
)
