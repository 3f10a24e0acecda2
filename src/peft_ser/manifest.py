"""The manifest: one record per utterance, fold lists and label spaces, and their files.

Everything downstream of corpus preparation (training, evaluation, caching) reads a prepared
corpus directory through this module only, so the on-disk formats are defined here once:

* ``manifest.csv``: one row per `Utterance`, columns in field order, read back losslessly;
* ``folds.json``: ``{"folds": [{"name", "train", "dev", "test"}, ...]}`` listing utterance keys;
* ``labels.json``: the ordered label names, index = class id.

All files are written atomically (temporary file in the same directory, then ``os.replace``)
so an interrupted run never leaves a half-written manifest that would later load silently.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from peft_ser.fileio import write_atomic

PAPER4: tuple[str, ...] = ("Neutral", "Angry", "Sad", "Happy")
"""The PEFT-SER paper's four classes, in class-id order."""

GENDERS = ("F", "M", "U")

MANIFEST_FILE = "manifest.csv"
FOLDS_FILE = "folds.json"
LABELS_FILE = "labels.json"


@dataclass(frozen=True)
class Utterance:
    """One usable utterance of a corpus.

    ``raw_label`` is the corpus's own code (``exc``, ``N``, ``05``) so a different label space
    can be derived later without re-reading the corpus; ``label`` is its name in the chosen
    space. ``session`` holds the recording session or the official split, whichever the
    corpus's protocol is defined over (empty when it has neither).
    """

    key: str
    corpus: str
    speaker: str
    gender: str
    path: str
    raw_label: str
    label: str
    session: str
    duration: float
    sample_rate: int
    channels: int


@dataclass(frozen=True)
class Fold:
    """One train/dev/test partition, as lists of utterance keys."""

    name: str
    train: list[str]
    dev: list[str]
    test: list[str]


@dataclass(frozen=True)
class PreparedCorpus:
    """What a prepared corpus directory holds, in memory."""

    manifest: list[Utterance]
    folds: list[Fold]
    labels: list[str]


_COLUMNS = [f.name for f in fields(Utterance)]
_INT_COLUMNS = {"sample_rate", "channels"}


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Render rows as CSV text (minimal quoting, ``\\n`` line ends) for `write_atomic`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_manifest(path: str | Path, utterances: Iterable[Utterance]) -> None:
    """Write utterances as CSV; floats use ``repr`` so they read back bit-identical."""
    rows = ([getattr(u, name) for name in _COLUMNS] for u in utterances)
    write_atomic(path, csv_text(_COLUMNS, rows))


def read_manifest(path: str | Path) -> list[Utterance]:
    """Read a manifest written by `write_manifest`; a missing column is an error naming it."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: manifest lacks columns {missing}")
        return [_utterance_from_row(row) for row in reader]


def _utterance_from_row(row: dict[str, str]) -> Utterance:
    values: dict[str, object] = {}
    for name in _COLUMNS:
        text = row[name]
        if name in _INT_COLUMNS:
            values[name] = int(text)
        elif name == "duration":
            values[name] = float(text)
        else:
            values[name] = text
    return Utterance(**values)  # type: ignore[arg-type]


def write_folds(path: str | Path, folds: Sequence[Fold]) -> None:
    """Write folds as JSON (one object per fold, keys in manifest order)."""
    document = {"folds": [vars(fold) for fold in folds]}
    write_atomic(path, json.dumps(document, indent=1) + "\n")


def read_folds(path: str | Path) -> list[Fold]:
    """Read folds written by `write_folds`."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    return [Fold(**fold) for fold in document["folds"]]


def write_labels(path: str | Path, labels: Sequence[str]) -> None:
    """Write the ordered label names (index = class id)."""
    write_atomic(path, json.dumps(list(labels)) + "\n")


def read_labels(path: str | Path) -> list[str]:
    """Read the ordered label names."""
    labels = json.loads(Path(path).read_text(encoding="utf-8"))
    return [str(label) for label in labels]


def save_prepared(directory: str | Path, prepared: PreparedCorpus) -> None:
    """Write the manifest, folds and labels of a prepared corpus into ``directory``."""
    directory = Path(directory)
    write_manifest(directory / MANIFEST_FILE, prepared.manifest)
    write_folds(directory / FOLDS_FILE, prepared.folds)
    write_labels(directory / LABELS_FILE, prepared.labels)


def load_prepared(directory: str | Path) -> PreparedCorpus:
    """Load a prepared corpus directory (as written by ``peft-ser prepare``)."""
    directory = Path(directory)
    return PreparedCorpus(
        manifest=read_manifest(directory / MANIFEST_FILE),
        folds=read_folds(directory / FOLDS_FILE),
        labels=read_labels(directory / LABELS_FILE),
    )


def select(prepared: PreparedCorpus, keys: Iterable[str]) -> list[Utterance]:
    """The utterances of ``keys`` (e.g. one split of a fold), in the order given."""
    by_key = {u.key: u for u in prepared.manifest}
    return [by_key[key] for key in keys]
