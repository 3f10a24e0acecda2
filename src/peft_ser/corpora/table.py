"""A table corpus: any labelled speech listed in a CSV, TSV, JSON Lines or Parquet file.

One row per utterance. Required columns ``path`` (relative paths resolve against the
table's folder) and ``label``; optional ``speaker``, ``gender``, ``session``, ``key``,
``split`` (train/dev/test, used as given), ``fold`` (a fold number, used as given),
``start``/``end`` (seconds: a segment of a longer file, so one recording can hold many
labelled turns) and ``arousal``, ``valence``, ``dominance`` (numbers on the user's own scale;
an empty cell is a missing value, which excludes the row from attribute targets as
``no_attribute_ratings``). With ``--targets attributes`` the label column may be left out:
the class label is then no target, and a row without one is labelled ``none``. Annotator
votes come from a ``votes`` column or ``votes_<label>`` columns (`peft_ser.corpora.table_votes`);
with ``--targets distribution`` a row may leave its label empty when it has votes.
``--columns path=file,label=emotion`` maps these names onto the table's own (``fold=`` with
nothing after ``=`` ignores a column). Header names match in any case.

A row that cannot be used is reported, never fatal: a malformed row (bad number, bad split,
no path, an attribute value that is not a finite number), an empty label where labels are a
target, and, in the shared checks, a duplicate key, a missing or bad file, a segment outside
its file, a clip too short. JSON Lines are parsed line by line with the standard library, so
one broken line is one malformed row rather than an unreadable table; Parquet goes through
pyarrow.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from peft_ser.corpora.base import (
    EMPTY_LABEL,
    MALFORMED_ROW,
    CorpusError,
    Entry,
    Problem,
    Scan,
    gender_letter,
)
from peft_ser.corpora.cells import identifier
from peft_ser.corpora.own import UNKNOWN_SPEAKER, OwnDataOptions, OwnScan, prepare_own
from peft_ser.corpora.table_votes import VOTES, VoteColumns, row_votes, vote_columns
from peft_ser.corpora.targets import check_choice, uses_labels
from peft_ser.data.manifest import ATTRIBUTE_TARGETS, ATTRIBUTES, PreparedCorpus
from peft_ser.utils.errors import suggest

COLUMNS = (
    "path", "label", "speaker", "gender", "session", "key", "split", "fold", "start", "end",
    *ATTRIBUTES, VOTES,
)  # fmt: skip
FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
SPLIT_NAMES = {
    "train": "train",
    "training": "train",
    "dev": "dev",
    "val": "dev",
    "valid": "dev",
    "validation": "dev",
    "development": "dev",
    "test": "test",
}
"""Split values a table may use (any case), and the split each one means."""


class MalformedRow(ValueError):
    """A row the table parser cannot use; the message says why."""


@dataclass(frozen=True)
class Row:
    """One row of the table: its cells by column name as the format gives them (text in a
    CSV, typed in JSON Lines and Parquet), where it is (``line 7`` of a text table, ``row 6``
    of a Parquet file), and why it could not be read at all, if so."""

    where: str
    cells: Mapping[str, object]
    problem: str = ""

    def text(self, column: str | None) -> str:
        """The cell of ``column`` as text (empty when absent)."""
        return _text(self.cells.get(column or ""))


def prepare_table(
    manifest: str | Path,
    out: str | Path | None = None,
    *,
    columns: Mapping[str, str] | None = None,
    options: OwnDataOptions | None = None,
    name: str | None = None,
    verbose: bool = False,
) -> PreparedCorpus:
    """Prepare the utterances listed in the table ``manifest`` into ``out`` (default
    ``prepared/<name>``; ``name`` defaults to the table's file name without extension).

    ``columns`` maps the names above onto the table's (see `parse_columns`); ``options``
    chooses labels, folds and targets (`OwnDataOptions`). Raises `CorpusError` when the
    table is missing, not a supported format, lacks a required column (``label`` unless the
    targets are attributes alone; an attribute column for attribute targets), or leaves
    nothing usable.
    """
    options = options or OwnDataOptions()
    check_choice(options.targets)
    path = Path(manifest).expanduser().resolve()
    if not path.is_file():
        problem = "is a folder, not a table" if path.is_dir() else "does not exist"
        raise CorpusError(f"table {path} {problem}")
    own = scan_table(path, columns or {}, options.targets)
    return prepare_own(name or path.stem, path, own, out, options, verbose=verbose)


def parse_columns(spec: str) -> dict[str, str]:
    """``path=file,label=emotion`` → ``{"path": "file", "label": "emotion"}``; ``fold=``
    (nothing after ``=``) ignores the table's ``fold`` column. Unknown names are refused."""
    mapping = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, equals, column = (text.strip() for text in item.partition("="))
        if not equals:
            raise CorpusError(f"--columns {spec!r}: {item!r} is not name=column")
        if name not in COLUMNS:
            raise CorpusError(
                f"--columns: unknown column name {name!r}{suggest(name, COLUMNS)}; "
                f"the names are {', '.join(COLUMNS)}"
            )
        mapping[name] = column
    return mapping


def scan_table(path: Path, columns: Mapping[str, str], targets: str = "categorical") -> OwnScan:
    """The entries, files, fold assignments and attribute values of the table at ``path``,
    read for ``targets``."""
    header, rows = read_rows(path)
    labels_needed = uses_labels(targets)
    required = ("path", "label") if labels_needed else ("path",)
    chosen = _resolve_columns(path, header, columns, required)
    rated = tuple(name for name in ATTRIBUTES if name in chosen)
    if targets in ATTRIBUTE_TARGETS and not rated:
        raise CorpusError(
            f"--targets {targets}: {path} has no arousal, valence or dominance column; its "
            f"columns are {header}: map one with --columns arousal=<column>"
        )
    voting = vote_columns(path, header, chosen.get(VOTES))
    if targets == "distribution" and not voting.present:
        raise CorpusError(
            f"--targets distribution: {path} has no votes column or votes_<label> columns; "
            f"its columns are {header}: map one with --columns votes=<column>"
        )
    scan = Scan([], set())
    own = OwnScan(scan, "speaker" in chosen, "--columns speaker=<column>", rated=rated)
    for row in rows:
        try:
            if row.problem:
                raise MalformedRow(row.problem)
            cells = _cells(row, chosen, f"{path} {row.where}")
            values = {name: _value(cells[name], chosen[name]) for name in rated}
            votes = _votes(row, voting)
            empty_allowed = not labels_needed or (targets == "distribution" and bool(votes))
            _add_row(own, cells, values, votes, path.parent, row.where, empty_allowed)
        except MalformedRow as error:
            key = row.text(chosen.get("key")) or row.text(chosen["path"])
            scan.problems.append(Problem(key, str(path), MALFORMED_ROW, f"{row.where}: {error}"))
    scan.audio = {entry.path for entry in scan.entries if os.path.lexists(entry.path)}
    return own


IDENTIFIERS = ("speaker", "label")
"""The columns read by the rule of `peft_ser.corpora.cells` (typed, numbers normalised)."""


def _votes(row: Row, columns: VoteColumns) -> dict[str, float] | None:
    """The row's votes (None without vote columns or with empty vote cells)."""
    if not columns.present:
        return None
    try:
        return row_votes(row.cells, columns)
    except ValueError as error:
        raise MalformedRow(str(error)) from None


def _cells(row: Row, chosen: Mapping[str, str], where: str) -> dict[str, str]:
    """The row's cells by our column names, as text: speakers and labels by the rule of
    `peft_ser.corpora.cells` (a `CorpusError` for a cell that is not one text or number),
    the others stripped."""
    return {
        name: identifier(row.cells.get(column), column, where)
        if name in IDENTIFIERS
        else row.text(column)
        for name, column in chosen.items()
    }


def _add_row(
    own: OwnScan,
    cells: Mapping[str, str],
    values: Mapping[str, float | None],
    votes: dict[str, float] | None,
    folder: Path,
    where: str,
    empty_allowed: bool,
) -> None:
    """Add one row's entry (or its empty-label problem, unless an empty label is allowed: no
    label target, or votes to keep the row for) with its attribute ``values`` and ``votes``,
    and its fold assignment, to ``own``."""
    if not cells["path"]:
        raise MalformedRow("no path")
    audio = os.path.abspath(os.path.join(folder, os.path.expanduser(cells["path"])))
    start, end = _segment(cells.get("start", ""), cells.get("end", ""))
    key = cells.get("key") or _default_key(cells)
    split = _split(cells.get("split", ""))
    fold = _fold_number(cells.get("fold", ""))
    label = cells.get("label", "")
    if not label and not empty_allowed:
        own.scan.problems.append(Problem(key, audio, EMPTY_LABEL, f"{where}: the label is empty"))
        return
    speaker = cells.get("speaker") or UNKNOWN_SPEAKER
    gender = gender_letter(cells.get("gender", ""))
    session = cells.get("session", "")
    own.scan.entries.append(
        Entry(
            key,
            speaker,
            gender,
            audio,
            label,
            session,
            start,
            end,
            arousal=values.get("arousal"),
            valence=values.get("valence"),
            dominance=values.get("dominance"),
            raw_votes=votes,
        )
    )
    if split:
        own.splits.setdefault(key, split)
    if fold:
        own.fold_numbers.setdefault(key, fold)


def _default_key(cells: Mapping[str, str]) -> str:
    """The path as the table writes it, plus ``@start-end`` for a segment."""
    if not (cells.get("start") or cells.get("end")):
        return cells["path"]
    return f"{cells['path']}@{cells.get('start', '')}-{cells.get('end', '')}"


def _seconds(text: str, name: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise MalformedRow(f"{name} {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise MalformedRow(f"{name} {text!r} is not a time in the file")
    return value


def _value(text: str, column: str) -> float | None:
    """An attribute cell as a number; empty is a missing value (the row is then unrated)."""
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise MalformedRow(f"{column} {text!r} is not a finite number")
    return value


def _segment(start_text: str, end_text: str) -> tuple[float, float | None]:
    """``(start, end)`` in seconds; a missing start is 0, a missing end the end of the file."""
    start = _seconds(start_text, "start") or 0.0
    end = _seconds(end_text, "end")
    if end is not None and end <= start:
        raise MalformedRow(f"end {end!r} is not after start {start!r}")
    return start, end


def _split(text: str) -> str:
    if not text:
        return ""
    if text.lower() not in SPLIT_NAMES:
        raise MalformedRow(f"split {text!r} is not one of train, dev, test")
    return SPLIT_NAMES[text.lower()]


def _fold_number(text: str) -> str:
    if not text:
        return ""
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not number.is_integer():
        raise MalformedRow(f"fold {text!r} is not a whole number")
    return str(int(number))


def _resolve_columns(
    path: Path, header: list[str], columns: Mapping[str, str], required: tuple[str, ...]
) -> dict[str, str]:
    """Our column name → the table's, for every column the table has (names match in any
    case); a ``required`` one it lacks is a `CorpusError` listing what it has."""
    by_lower: dict[str, list[str]] = {}
    for column in header:
        by_lower.setdefault(column.lower(), []).append(column)
    chosen = {}
    for name in COLUMNS:
        wanted = columns.get(name, name)
        found = wanted if wanted in header else None
        if found is None and len(by_lower.get(wanted.lower(), [])) == 1:
            found = by_lower[wanted.lower()][0]
        if found is not None and wanted:
            chosen[name] = found
        elif name in required:
            rated = any(a in columns or a in by_lower for a in ATTRIBUTES)
            alone = "; or train its attribute values alone with --targets attributes"
            raise CorpusError(
                f"{path}: no {wanted!r} column{suggest(wanted, header)}; its columns are "
                f"{header}: map one with --columns {name}=<column>"
                f"{alone if name == 'label' and rated else ''}"
            )
        elif name in columns and wanted:
            raise CorpusError(f"--columns {name}={wanted}: {path} has no column {wanted!r}")
    return chosen


def read_rows(path: Path) -> tuple[list[str], list[Row]]:
    """The header and rows of a table in any supported format, each cell as the format
    gives it (text in CSV and TSV; text, numbers, booleans, lists, objects or null in JSON
    Lines and Parquet)."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise CorpusError(
            f"{path}: unknown table format {path.suffix!r}; use one of {', '.join(FORMATS)}"
        )
    try:
        if kind == "parquet":
            return _read_parquet(path)
        with open(path, newline="", encoding="utf-8-sig") as handle:
            if kind == "jsonl":
                return _read_jsonl(handle)
            return _read_delimited(handle, "\t" if kind == "tsv" else ",")
    except UnicodeDecodeError as error:
        raise CorpusError(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from None
    except csv.Error as error:
        raise CorpusError(f"{path}: not valid {kind.upper()} ({error})") from None


def _text(value: object) -> str:
    """A cell as text: strings stripped, floats as ``repr`` (exact), nulls and NaN empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value).strip()


def _read_delimited(handle: Iterator[str], delimiter: str) -> tuple[list[str], list[Row]]:
    reader = csv.reader(handle, delimiter=delimiter)
    header = [name.strip() for name in next(reader, [])]
    rows = []
    for fields in reader:
        if not any(field.strip() for field in fields):
            continue
        problem = ""
        if len(fields) != len(header):
            problem = f"{len(fields)} fields, the header has {len(header)}"
        cells = dict(zip(header, fields, strict=False))
        rows.append(Row(f"line {reader.line_num}", cells, problem))
    return header, rows


def _read_jsonl(handle: Iterator[str]) -> tuple[list[str], list[Row]]:
    header: dict[str, None] = {}
    rows = []
    for number, line in enumerate(handle, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as error:
            rows.append(Row(f"line {number}", {}, f"not JSON ({error.msg}, column {error.colno})"))
            continue
        except (ValueError, RecursionError) as error:  # a 5000-digit number, deep nesting
            problem = str(error) if isinstance(error, ValueError) else "nested too deeply"
            rows.append(Row(f"line {number}", {}, f"not usable JSON ({problem})"))
            continue
        if not isinstance(record, dict):
            rows.append(Row(f"line {number}", {}, "not a JSON object"))
            continue
        header |= dict.fromkeys(record)
        rows.append(Row(f"line {number}", record))
    return list(header), rows


def _read_parquet(path: Path) -> tuple[list[str], list[Row]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise CorpusError(f"{path}: not a readable Parquet file ({error})") from None
    rows = [Row(f"row {number}", record) for number, record in enumerate(table.to_pylist(), 1)]
    return list(table.column_names), rows
