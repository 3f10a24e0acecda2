"""MSP-IMPROV: six sessions of improvised dyadic recordings, one female and one male actor each.

The label file ships as ``Evalution.txt`` (sic); ``Evaluation.txt`` is accepted too, at the
root or one folder below. Each blank-line-separated block starts with the consensus line
``UTD-IMPROV-S01A-F01-P-FM01.avi; N; A:2.4; V:3.0; D:2.8 ; N:5;`` (consensus class, then
the mean arousal, valence and dominance, 1 to 5, and the number of raters); the rater lines
after it are ignored. The
audio of ``UTD-IMPROV-<id>.avi`` is ``[Audio/]session<N>/<S01A>/<P>/MSP-IMPROV-<id>.wav``,
where ``F01`` names the speaker (gender + session number).
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

_LABEL_FILES = ("Evalution.txt", "Evaluation.txt")
_RATING_KEYS = {"A": "arousal", "V": "valence", "D": "dominance"}
_CONSENSUS = re.compile(r"^UTD-IMPROV-((S\d+[A-Z])-(([FM])(\d+))-([A-Z])-([A-Z]+\d+))\.avi$")


def _label_file(root: Path) -> Path | None:
    for folder in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        for name in _LABEL_FILES:
            if (folder / name).is_file():
                return folder / name
    return None


def _audio_base(root: Path) -> Path:
    return root / "Audio" if (root / "Audio").is_dir() else root


def _first_lines(text: str) -> list[str]:
    """The first line of every blank-line-separated block."""
    blocks = re.split(r"\n\s*\n", text.replace("\r\n", "\n"))
    return [block.strip().splitlines()[0] for block in blocks if block.strip()]


def scan(root: Path) -> Scan:
    """One entry per consensus line; audio under ``Audio/`` or directly under the root."""
    label_file = require_file(_label_file(root), f"{root}/Evalution.txt or Evaluation.txt")
    audio_base = _audio_base(root)
    result = Scan([], find_audio(audio_base, "session*/*/*/*"))
    for line in _first_lines(label_file.read_text(encoding="utf-8", errors="replace")):
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
        result.entries.append(
            Entry(
                key, speaker, gender, path, fields[1], f"Session{int(session)}",
                arousal=ratings["arousal"], valence=ratings["valence"],
                dominance=ratings["dominance"],
            )
        )  # fmt: skip
    return result


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
)
