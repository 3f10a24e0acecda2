"""What every corpus module provides, and the pieces they share.

A corpus module knows only its own layout: it finds the label rows (`Entry`, with the path
where the audio should be; the fields an `Utterance` starts from, defined beside it in
`peft_ser.data.manifest`) and the audio files actually on disk (`Scan`), names its label
codes (`LabelScheme`) and its fold protocols (`Protocol`). Matching rows with files, label
mapping, audio checks, exclusion reasons and output files are the same for every corpus and
live in `peft_ser.corpora.prepare`.
"""

from __future__ import annotations

import glob
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from peft_ser.data.manifest import PAPER4, Entry, Fold, Utterance
from peft_ser.utils.errors import UserError

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".mp3"})

# Exclusion reasons, in the order `prepare` checks them.
MALFORMED_ROW = "malformed_label_row"
EMPTY_LABEL = "empty_label"
DUPLICATE = "duplicate"
MISSING_AUDIO = "missing_audio"
NO_AGREEMENT = "no_agreement"
NO_RATINGS = "no_attribute_ratings"
UNKNOWN_LABEL = "unknown_label"
OUTSIDE_LABEL_SET = "outside_label_set"
OUTSIDE_PROTOCOL = "outside_protocol"
EMPTY_AUDIO = "empty_audio"
UNREADABLE_AUDIO = "unreadable_audio"
NON_FINITE_AUDIO = "non_finite_audio"
SILENT_AUDIO = "silent_audio"
SEGMENT_OUTSIDE = "segment_outside_audio"
TOO_SHORT = "too_short"
RARE_LABEL = "rare_label"
UNLABELLED_AUDIO = "unlabelled_audio"
REASONS = (
    MALFORMED_ROW,
    EMPTY_LABEL,
    DUPLICATE,
    MISSING_AUDIO,
    NO_AGREEMENT,
    NO_RATINGS,
    UNKNOWN_LABEL,
    OUTSIDE_LABEL_SET,
    OUTSIDE_PROTOCOL,
    EMPTY_AUDIO,
    UNREADABLE_AUDIO,
    NON_FINITE_AUDIO,
    SILENT_AUDIO,
    SEGMENT_OUTSIDE,
    TOO_SHORT,
    RARE_LABEL,
    UNLABELLED_AUDIO,
)


class CorpusError(UserError):
    """Preparation cannot produce anything: wrong root, bad option, or nothing usable left."""


_AUDIO_REASONS = {"missing": MISSING_AUDIO, "empty": EMPTY_AUDIO, "non_finite": NON_FINITE_AUDIO}


def audio_reason(kind: str) -> str:
    """The exclusion reason for an `AudioError` of ``kind`` (missing, empty, unreadable,
    non_finite)."""
    return _AUDIO_REASONS.get(kind, UNREADABLE_AUDIO)


def require_columns(path: Path, header: Sequence[str] | None, needed: Sequence[str]) -> None:
    """Fail with the expected header when a label table lacks a column the parser reads."""
    present = {name.strip().lower() for name in header or []}
    missing = [name for name in needed if name.lower() not in present]
    if missing:
        raise CorpusError(f"{path}: missing columns {missing}; expected at least {list(needed)}")


def require_file(path: Path | None, what: str) -> Path:
    """``path`` when a layout check found it; otherwise the error naming what was expected."""
    if path is None:
        raise CorpusError(f"{what} not found")
    return path


def rating(text: str | None) -> float | None:
    """A rating from a label file: the number, or ``None`` for an empty, non-numeric or
    non-finite field (the utterance then counts as unrated)."""
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Problem:
    """One excluded item: a label row, an audio file or both."""

    key: str
    path: str
    reason: str
    detail: str


@dataclass
class Scan:
    """What a corpus module found: label rows, audio files on disk, and rows it could not read."""

    entries: list[Entry]
    audio: set[str]
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Warnings about lines that were read only in part (vote lines that count no vote)."""


Materialize = Callable[[Scan, Path, bool], Scan]
"""``materialize(scan, out, verbose)``: ``scan`` with media the audio reader cannot open
(MELD's mp4 clips) decoded once into audio files under the prepared folder ``out``, the rows
pointing at them, and what failed to decode as problems."""


@dataclass(frozen=True)
class LabelSet:
    """A label space: ordered class names and the corpus codes that map to each."""

    names: tuple[str, ...]
    codes: dict[str, str]
    description: str


def label_map(spec: str) -> LabelSet:
    """The label set ``--labels`` describes: ``neu=Neutral,hap+exc=Happy,sad`` maps ``neu`` to
    Neutral, merges ``hap`` and ``exc`` into Happy and keeps ``sad`` under its own name.

    Class ids follow the order in which names first appear, so a mapping fixes them; every
    raw label it does not name is outside the label set. Raises `CorpusError` for an empty
    item, an empty code or name, or a code given twice.
    """
    codes: dict[str, str] = {}
    for item in spec.split(","):
        raw, _, name = item.partition("=")
        name = (name if "=" in item else raw).strip()
        sources = [code.strip() for code in raw.split("+")]
        if not name or not all(sources):
            raise CorpusError(f"--labels {spec!r}: {item.strip()!r} is not code[+code]=Name")
        for code in sources:
            if code in codes:
                raise CorpusError(f"--labels {spec!r}: {code!r} is mapped twice")
            codes[code] = name
    names = tuple(dict.fromkeys(codes.values()))
    return LabelSet(names, codes, f"--labels {spec}")


PAPER4_BY_INITIAL = {name[0]: name for name in PAPER4}
"""The paper's four classes under their English initials (``N``, ``A``, ``S``, ``H``), the
label codes CREMA-D, MSP-IMPROV and MSP-Podcast share; in `PAPER4` order, so a ``full`` map
that starts with them lists the paper's four first."""


@dataclass(frozen=True)
class LabelScheme:
    """A corpus's label codes: its emotion classes, the non-emotion codes it uses and ties.

    ``full`` maps every emotion code to a name (the paper's four first, so class ids agree
    across label sets); ``other`` lists codes that are valid but name no emotion ("other");
    ``no_agreement`` the codes for "annotators did not agree"; a raw label containing
    ``tie_separator`` is a tie of several codes. Anything else is an unknown label.
    """

    full: dict[str, str]
    paper4: dict[str, str]
    other: frozenset[str] = frozenset()
    no_agreement: frozenset[str] = frozenset()
    tie_separator: str | None = None
    extra_sets: dict[str, LabelSet] = field(default_factory=dict)

    @property
    def sets(self) -> dict[str, LabelSet]:
        """Every selectable label set by name: ``paper4``, ``full`` and the corpus's extras."""
        full_names = tuple(dict.fromkeys(self.full.values()))
        return {
            "paper4": LabelSet(PAPER4, self.paper4, "the paper's 4 classes"),
            "full": LabelSet(full_names, self.full, "every emotion class of the corpus"),
            **self.extra_sets,
        }

    def classify(self, raw: str, label_set: LabelSet) -> tuple[str | None, str]:
        """Map ``raw`` into ``label_set``: ``(name, "")`` or ``(None, exclusion reason)``."""
        if raw in self.no_agreement or (self.tie_separator and self.tie_separator in raw):
            return None, NO_AGREEMENT
        if raw not in self.full and raw not in self.other:
            return None, UNKNOWN_LABEL
        if raw not in label_set.codes:
            return None, OUTSIDE_LABEL_SET
        return label_set.codes[raw], ""


@dataclass(frozen=True)
class FoldPlan:
    """The folds a rule made, and what it changed because the corpus is incomplete (one
    sentence each, e.g. "only 3 sessions (…), made 3 folds instead of 5")."""

    folds: list[Fold]
    warnings: list[str] = field(default_factory=list)


FoldRule = Callable[[Sequence[Utterance], int], FoldPlan]
"""``rule(utterances, folds)``: the folds of ``utterances``, ``folds`` being how many the
protocol makes on the complete corpus (a rule makes fewer, and says so, when it must)."""


@dataclass(frozen=True)
class Protocol:
    """How a corpus is split into folds, and which utterances the protocol uses at all."""

    description: str
    folds: int
    """How many folds the protocol makes on the complete corpus (the paper's count)."""
    make_folds: FoldRule
    keep: Callable[[Entry], bool] | None = None
    speaker_independent: bool = True
    """False for protocols that do not keep each speaker in one split (an official split
    that reuses speakers, an utterance-level split): the leakage check then always warns."""
    headline: str = "uar"
    """The metric a protocol ranks classifiers by (``uar``; ``macro_f1`` for the MSP-Podcast
    challenge), recorded in summary.json; attribute tasks rank by mean CCC."""


@dataclass(frozen=True)
class Corpus:
    """Everything `prepare` needs to know about one corpus."""

    name: str
    title: str
    layout: str
    """The expected layout, shown when a root does not match and in ``--help``."""
    looks_like: Callable[[Path], bool]
    scan: Callable[[Path], Scan]
    labels: LabelScheme
    protocols: dict[str, Protocol]
    """Protocols by name; the first one is the default."""
    top_dirs: tuple[str, ...] = ()
    """Folder names the corpus ships in, so a root one level above it is accepted too."""
    materialize: Materialize | None = None
    """For corpora shipped as media libsndfile cannot read (video): see `Materialize`."""
    attribute_scale: str = ""
    """The scale of the corpus's attribute ratings in words; empty: it has none."""
    votes: str = ""
    """Where the corpus's per-annotator labels come from, in words; empty: it ships none."""


def stem(path: str) -> str:
    """The file name without folder and extension."""
    return os.path.splitext(os.path.basename(path))[0]


def is_audio_file(path: str) -> bool:
    """An audio file of the corpus (not AppleDouble ``._`` metadata or other hidden files)."""
    name = os.path.basename(path)
    return os.path.splitext(name)[1].lower() in AUDIO_SUFFIXES and not name.startswith(".")


def find_audio(root: Path, pattern: str) -> set[str]:
    """Audio files under ``root`` matching the glob ``pattern``, as ``os.path.join`` strings
    (paths are plain strings throughout a scan: pathlib costs seconds on large corpora)."""
    found = glob.iglob(os.path.join(glob.escape(str(root)), pattern))
    return {path for path in found if is_audio_file(path)}


def gender_letter(text: str) -> str:
    """``F``/``M`` from a gender word or letter in any case; ``U`` when not stated."""
    initial = text.strip()[:1].upper()
    return initial if initial in ("F", "M") else "U"


def entries_from_names(files: Iterable[str], parse: Callable[[str], Entry | None]) -> list[Entry]:
    """Entries of corpora whose labels are coded in file names; unparsable names are left
    out here and reported later as audio without labels."""
    parsed = (parse(path) for path in sorted(files))
    return [entry for entry in parsed if entry is not None]


def natural_key(text: str) -> list[object]:
    """Sort key that orders ``Session10`` after ``Session9``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]
