"""The manifest: one record per utterance, fold lists and label spaces, and their files.

Everything downstream of corpus preparation (training, evaluation, caching) reads a prepared
corpus directory through this module only, so the on-disk formats are defined here once:

* ``manifest.csv``: one row per `Utterance`, columns `MANIFEST_COLUMNS`, read back losslessly;
* ``folds.json``: ``{"folds": [{"name", "train", "dev", "test"}, ...]}`` listing utterance keys,
  and ``"speaker_leakage"`` when some speaker is in two splits of a fold (see `PreparedCorpus`);
* ``labels.json``: the ordered label names, index = class id;
* ``targets.json``, for a corpus prepared for anything but class labels alone:
  ``{"targets": "attributes" | "both" | "distribution", "attributes": [...], "scale": "..."}``
  (``distribution`` rates no attribute); a corpus without it is categorical, as every corpus
  prepared before attributes existed.

All files are written atomically (temporary file in the same directory, then ``os.replace``)
so an interrupted run never leaves a half-written manifest that would later load silently.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from peft_ser.data.vote_columns import OTHER_VOTES, VOTES_ONLY, in_set_weight, parse_votes
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import write_atomic

PAPER4: tuple[str, ...] = ("Neutral", "Angry", "Sad", "Happy")
"""The PEFT-SER paper's four classes, in class-id order."""

ATTRIBUTES: tuple[str, ...] = ("arousal", "valence", "dominance")
"""The emotional attributes (dimensions) an utterance may be rated on, in column order."""
TARGETS = ("categorical", "attributes", "both", "distribution")
"""What a corpus can be prepared for: class labels, attribute ratings, both, or the
annotators' vote distributions (class labels, plus the utterances kept for their votes)."""
ATTRIBUTE_TARGETS = ("attributes", "both")
"""The targets that train attribute ratings."""

MANIFEST_FILE = "manifest.csv"
FOLDS_FILE = "folds.json"
LABELS_FILE = "labels.json"
TARGETS_FILE = "targets.json"
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Entry:
    """One labelled utterance as a corpus's label files (or file names) describe it: what a
    corpus module reads before `peft_ser.corpora.prepare` has checked its audio and label.

    ``raw_label`` is the corpus's own code (``exc``, ``N``, ``05``) so a different label space
    can be derived later without re-reading the corpus. ``session`` holds the recording session
    or the official split, whichever the corpus's protocol is defined over (empty when it has
    neither).

    ``start`` and ``end`` (seconds) select a segment of a longer recording, so one file can
    hold many labelled turns; ``end`` is ``None`` for "to the end of the file", and a whole
    file is ``start=0.0, end=None``.

    ``arousal``, ``valence`` and ``dominance`` are the consensus ratings on the corpus's own
    scale (see `PreparedCorpus.attribute_scale`), ``None`` when the corpus has none.

    ``raw_votes`` are the annotators' categorical choices in the corpus's own codes (the codes
    ``raw_label`` uses), each code with its summed annotator weight (`peft_ser.corpora.votes`
    gives the rule), ``None`` when the corpus ships no per-annotator labels.
    """

    key: str
    speaker: str
    gender: str
    path: str
    raw_label: str
    session: str = ""
    start: float = 0.0
    end: float | None = None
    arousal: float | None = None
    valence: float | None = None
    dominance: float | None = None
    raw_votes: dict[str, float] | None = field(default=None, hash=False)

    def attribute_values(self, names: Sequence[str]) -> list[float] | None:
        """The ratings ``names`` in that order, or ``None`` when any of them is missing."""
        values = [getattr(self, name) for name in names]
        return None if any(value is None for value in values) else values

    @property
    def is_segment(self) -> bool:
        """Whether the utterance is a part of its file rather than the whole file."""
        return self.start != 0.0 or self.end is not None


@dataclass(frozen=True, kw_only=True)
class Utterance(Entry):
    """One usable utterance of a corpus: its `Entry`, and what preparation found out.

    ``corpus`` names the corpus, ``label`` is the raw label's name in the chosen label space;
    ``duration`` (seconds, of the segment), ``sample_rate`` and ``channels`` come from the
    audio file. These fields are keyword-only: the `Entry` fields come first, positionally.

    ``votes`` are ``raw_votes`` in the chosen label space: each label's summed annotator
    weight, in label order, then ``other`` for the weight on codes outside the label space;
    ``None`` without per-annotator labels. An utterance kept for its votes alone (its
    consensus is outside the label space, ``prepare --targets distribution``) has the empty
    ``label`` (`VOTES_ONLY`).
    """

    corpus: str
    label: str
    duration: float
    sample_rate: int
    channels: int
    votes: dict[str, float] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class Fold:
    """One train/dev/test partition, as lists of utterance keys."""

    name: str
    train: list[str]
    dev: list[str]
    test: list[str]


@dataclass(frozen=True)
class PreparedCorpus:
    """What a prepared corpus directory holds, in memory.

    ``speaker_leakage`` is ``None`` when no speaker is in two of train/dev/test of any fold;
    otherwise one sentence saying which folds share speakers and why (an utterance-level split,
    an official split that reuses speakers), for results to carry as a warning: scores of
    such folds overstate how well a model does on speakers it has never heard.
    """

    manifest: list[Utterance]
    folds: list[Fold]
    labels: list[str]
    speaker_leakage: str | None = None
    targets: str = "categorical"
    """One of `TARGETS`: what the corpus was prepared to train."""
    attributes: tuple[str, ...] = ()
    """The attributes every utterance is rated on (empty for a categorical corpus)."""
    attribute_scale: str = ""
    """The ratings' scale in words (``1-7``), as the corpus documents it."""
    directory: Path | None = field(default=None, compare=False)
    """The folder the corpus was read from or written to; None for one built in memory."""

    def labelled(self) -> PreparedCorpus:
        """The corpus without the utterances kept for their votes alone (`VOTES_ONLY`), in
        the manifest and in every fold: what a class or attribute task trains and scores on,
        the same utterances and folds as a categorical preparation of the corpus."""
        if all(u.label != VOTES_ONLY for u in self.manifest):
            return self
        keep = {u.key for u in self.manifest if u.label != VOTES_ONLY}

        def kept(keys: list[str]) -> list[str]:
            return [key for key in keys if key in keep]

        folds = [Fold(f.name, kept(f.train), kept(f.dev), kept(f.test)) for f in self.folds]
        manifest = [u for u in self.manifest if u.key in keep]
        return replace(self, manifest=manifest, folds=folds)


MANIFEST_COLUMNS = (
    "key", "corpus", "speaker", "gender", "path", "raw_label", "label", "session", "duration",
    "sample_rate", "channels", "start", "end", *ATTRIBUTES, "raw_votes", "votes",
)  # fmt: skip
"""The columns of ``manifest.csv``, in their order: every field of `Utterance`. The vote
columns hold a JSON object (``{"Neutral": 2.5, "Sad": 0.5, "other": 1.0}``) or nothing."""
_VOTE_COLUMNS = {"raw_votes", "votes"}
_OPTIONAL_COLUMNS = {
    "start": "0.0", "end": "", **dict.fromkeys(ATTRIBUTES, ""), **dict.fromkeys(_VOTE_COLUMNS, ""),
}  # fmt: skip
"""Columns added after the first manifests were written, with the value older files imply."""
_INT_COLUMNS = {"sample_rate", "channels"}
_FLOAT_COLUMNS = {"duration", "start"}


class PreparedCorpusError(UserError):
    """A prepared corpus directory that lacks a file, holds one that does not parse, or whose
    files disagree; the message names the file and the problem, and how to fix it."""


class NotPreparedError(PreparedCorpusError):
    """A folder that holds no prepared corpus at all. `peft_ser.corpora.load_prepared` adds the
    ``peft-ser prepare`` command that makes one, which only the corpus registry can word."""

    def __init__(self, folder: Path, message: str) -> None:
        super().__init__(message)
        self.folder = folder


@contextmanager
def _parsing(path: str | Path) -> Iterator[None]:
    """Turn what a missing, damaged or foreign file raises into a `PreparedCorpusError` naming
    it; the readers raise ``ValueError`` for content that parses but is not what they expect."""
    try:
        yield
    except FileNotFoundError as error:
        raise PreparedCorpusError(f"{path} is missing") from error
    except OSError as error:
        raise PreparedCorpusError(f"{path}: cannot read ({error.strerror})") from error
    except UnicodeDecodeError as error:
        problem = f"not UTF-8 text ({error.reason} at byte {error.start})"
        raise PreparedCorpusError(f"{path}: {problem}") from error
    except json.JSONDecodeError as error:
        problem = f"not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        raise PreparedCorpusError(f"{path}: {problem}") from error
    except csv.Error as error:
        raise PreparedCorpusError(f"{path}: not valid CSV ({error})") from error
    except ValueError as error:
        raise PreparedCorpusError(f"{path}: {error}") from error


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Render rows as CSV text (minimal quoting, ``\\n`` line ends) for `write_atomic`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_manifest(path: str | Path, utterances: Iterable[Utterance]) -> None:
    """Write utterances as CSV; floats use ``repr`` so they read back bit-identical, and an
    open ``end`` is an empty field."""
    rows = ([_cell(getattr(u, name)) for name in MANIFEST_COLUMNS] for u in utterances)
    write_atomic(path, csv_text(MANIFEST_COLUMNS, rows))


def _cell(value: object) -> object:
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else value


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a manifest written by `write_manifest`; a missing column, a row that does not
    parse or a file that is not UTF-8 CSV is a `PreparedCorpusError` naming file and line."""
    with _parsing(path), open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        present = reader.fieldnames or []
        missing = [c for c in MANIFEST_COLUMNS if c not in present and c not in _OPTIONAL_COLUMNS]
        if missing:
            raise ValueError(f"manifest lacks columns {missing}")
        utterances = []
        for row in reader:
            try:
                utterances.append(_utterance_from_row(row))
            except ValueError as error:
                raise ValueError(f"line {reader.line_num}: {error}") from error
        return utterances


def _utterance_from_row(row: dict[str | None, str | None]) -> Utterance:
    if None in row:
        raise ValueError("more fields than the header")
    values: dict[str, object] = {}
    for name in MANIFEST_COLUMNS:
        text = row[name] if name in row else _OPTIONAL_COLUMNS[name]
        if text is None:
            raise ValueError("fewer fields than the header")
        values[name] = _parse_value(name, text)
    return Utterance(**values)  # type: ignore[arg-type]


def _parse_value(name: str, text: str) -> object:
    if name in _VOTE_COLUMNS:
        return parse_votes(text) if text else None
    try:
        if name in _INT_COLUMNS:
            return int(text)
        if name in _FLOAT_COLUMNS:
            return float(text)
        if name == "end":
            return float(text) if text else None
        if name in ATTRIBUTES:
            value = float(text) if text else None
        else:
            return text
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{name} {text!r} is not a finite number")
    return value


def write_folds(
    path: str | Path, folds: Sequence[Fold], speaker_leakage: str | None = None
) -> None:
    """Write folds as JSON (one object per fold, keys in manifest order), with the
    ``speaker_leakage`` sentence when there is one."""
    document: dict[str, object] = {"folds": [vars(fold) for fold in folds]}
    if speaker_leakage is not None:
        document["speaker_leakage"] = speaker_leakage
    write_atomic(path, json.dumps(document, indent=1) + "\n")


def _read_folds_document(path: str | Path) -> tuple[list[Fold], str | None]:
    """The folds and the speaker-leakage sentence of a folds file."""
    with _parsing(path):
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        folds = document.get("folds") if isinstance(document, dict) else None
        if not isinstance(folds, list) or not folds:
            raise ValueError('expected {"folds": [{"name", "train", "dev", "test"}, ...]}')
        leakage = document.get("speaker_leakage")
        if leakage is not None and not isinstance(leakage, str):
            raise ValueError("speaker_leakage must be text")
        return [_fold_from_json(index, item) for index, item in enumerate(folds, 1)], leakage


def _is_text_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _fold_from_json(index: int, item: object) -> Fold:
    expected = ["name", *SPLITS]
    if not isinstance(item, dict) or sorted(item) != sorted(expected):
        raise ValueError(f"fold {index}: expected exactly the keys {expected}")
    if not isinstance(item["name"], str) or not all(_is_text_list(item[s]) for s in SPLITS):
        raise ValueError(f"fold {index}: name must be text, train/dev/test lists of keys")
    return Fold(**item)


def write_labels(path: str | Path, labels: Sequence[str]) -> None:
    """Write the ordered label names (index = class id)."""
    write_atomic(path, json.dumps(list(labels)) + "\n")


def read_labels(path: str | Path) -> list[str]:
    """Read the ordered label names; anything but a list of distinct names is an error."""
    with _parsing(path):
        labels = json.loads(Path(path).read_text(encoding="utf-8"))
        if not _is_text_list(labels) or not labels or len(set(labels)) != len(labels):
            raise ValueError('expected a list of distinct label names, e.g. ["Neutral", "Sad"]')
        return list(labels)


def save_prepared(directory: str | Path, prepared: PreparedCorpus) -> None:
    """Write the manifest, folds and labels of a prepared corpus into ``directory``."""
    directory = Path(directory)
    write_manifest(directory / MANIFEST_FILE, prepared.manifest)
    write_folds(directory / FOLDS_FILE, prepared.folds, prepared.speaker_leakage)
    write_labels(directory / LABELS_FILE, prepared.labels)
    write_targets(directory / TARGETS_FILE, prepared)


def write_targets(path: str | Path, prepared: PreparedCorpus) -> None:
    """Write what the corpus was prepared for (see the module docstring); a categorical corpus
    has no such file (an earlier attribute preparation's is removed), as before attributes."""
    if prepared.targets == "categorical":
        Path(path).unlink(missing_ok=True)
        return
    document = {
        "targets": prepared.targets,
        "attributes": list(prepared.attributes),
        "scale": prepared.attribute_scale,
    }
    write_atomic(path, json.dumps(document) + "\n")


def read_targets(path: str | Path) -> tuple[str, tuple[str, ...], str]:
    """``(targets, attributes, scale)`` of ``targets.json``; a corpus without the file is
    categorical (it was prepared before attributes existed)."""
    if not Path(path).is_file():
        return "categorical", (), ""
    with _parsing(path):
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(document, dict) or document.get("targets") not in TARGETS:
            raise ValueError(f'expected {{"targets": one of {list(TARGETS)}, "attributes": [...]}}')
        attributes = document.get("attributes", [])
        if not _is_text_list(attributes) or not set(attributes) <= set(ATTRIBUTES):
            raise ValueError(f"attributes must be a list drawn from {list(ATTRIBUTES)}")
        if (document["targets"] in ATTRIBUTE_TARGETS) != bool(attributes):
            raise ValueError("attribute targets need attributes, the others none")
        return document["targets"], tuple(attributes), str(document.get("scale", ""))


def read_prepared(directory: str | Path) -> PreparedCorpus:
    """Load a prepared corpus directory (as written by ``peft-ser prepare``).

    Raises `PreparedCorpusError` naming the file and the problem: a missing directory or
    manifest (`NotPreparedError`), a missing folds or labels file, a file that does not parse,
    folds naming keys absent from the manifest, or manifest labels absent from ``labels.json``.
    """
    directory = Path(directory)
    _require_files(directory)
    folds, speaker_leakage = _read_folds_document(directory / FOLDS_FILE)
    targets, attributes, scale = read_targets(directory / TARGETS_FILE)
    prepared = PreparedCorpus(
        manifest=read_manifest(directory / MANIFEST_FILE),
        folds=folds,
        labels=read_labels(directory / LABELS_FILE),
        speaker_leakage=speaker_leakage,
        targets=targets,
        attributes=attributes,
        attribute_scale=scale,
        directory=directory,
    )
    _require_agreement(directory, prepared)
    return prepared


def _require_files(directory: Path) -> None:
    if not directory.exists():
        raise NotPreparedError(directory, f"{directory} does not exist")
    if not directory.is_dir():
        raise PreparedCorpusError(f"{directory} is a file, not a prepared corpus directory")
    if not (directory / MANIFEST_FILE).is_file():
        raise NotPreparedError(
            directory, f"{directory} is not a prepared corpus (no {MANIFEST_FILE})"
        )
    missing = [name for name in (FOLDS_FILE, LABELS_FILE) if not (directory / name).is_file()]
    if missing:
        raise PreparedCorpusError(
            f"{directory} has {MANIFEST_FILE} but no {' or '.join(missing)} (an interrupted "
            "or partial copy?): run `peft-ser prepare` again with this folder as --out"
        )


def _require_agreement(directory: Path, prepared: PreparedCorpus) -> None:
    """Folds may only name manifest keys, and the manifest only use labels of labels.json."""
    keys = {u.key for u in prepared.manifest}
    for fold in prepared.folds:
        for split in SPLITS:
            absent = [key for key in getattr(fold, split) if key not in keys]
            if absent:
                raise PreparedCorpusError(
                    f"{directory / FOLDS_FILE}: fold {fold.name} {split} names {len(absent)} "
                    f"keys absent from {MANIFEST_FILE} (first {absent[:3]}): the files come "
                    "from different runs; run `peft-ser prepare` again"
                )
    _require_votes_agreement(directory, prepared)
    labelled = {u.label for u in prepared.manifest if u.label != VOTES_ONLY}
    unknown = sorted(labelled - set(prepared.labels))
    if unknown:
        raise PreparedCorpusError(
            f"{directory / MANIFEST_FILE}: labels {unknown} are not in {LABELS_FILE} "
            f"{prepared.labels}"
        )
    unrated = [u.key for u in prepared.manifest if u.attribute_values(prepared.attributes) is None]
    if unrated:
        raise PreparedCorpusError(
            f"{directory / MANIFEST_FILE}: {len(unrated)} utterances lack a rating of "
            f"{list(prepared.attributes)} that {TARGETS_FILE} promises (first {unrated[:3]}); "
            "run `peft-ser prepare` again"
        )


def _require_votes_agreement(directory: Path, prepared: PreparedCorpus) -> None:
    """Votes may only name labels of labels.json and `OTHER_VOTES`; an utterance without a
    label (`VOTES_ONLY`) belongs only in a corpus prepared with ``--targets distribution``,
    and only with a vote in the label space."""
    allowed = {*prepared.labels, OTHER_VOTES}
    for u in prepared.manifest:
        if u.votes is not None and not set(u.votes) <= allowed:
            raise PreparedCorpusError(
                f"{directory / MANIFEST_FILE}: the votes of {u.key} name "
                f"{sorted(set(u.votes) - allowed)}, not in {LABELS_FILE} {prepared.labels} "
                f"or {OTHER_VOTES!r}; run `peft-ser prepare` again"
            )
    distribution = prepared.targets == "distribution"
    bare = [
        u.key
        for u in prepared.manifest
        if u.label == VOTES_ONLY and not (distribution and u.votes and in_set_weight(u.votes))
    ]
    if bare:
        raise PreparedCorpusError(
            f"{directory / MANIFEST_FILE}: {len(bare)} utterances have no label (first "
            f"{bare[:3]}); only a corpus prepared with --targets distribution keeps an "
            "utterance for its votes alone, and only with a vote in the label set; run "
            "`peft-ser prepare` again"
        )


def select(prepared: PreparedCorpus, keys: Iterable[str]) -> list[Utterance]:
    """The utterances of ``keys`` (e.g. one split of a fold), in the order given."""
    by_key = {u.key: u for u in prepared.manifest}
    return [by_key[key] for key in keys]
