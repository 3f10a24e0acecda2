"""A table's annotator votes: a ``votes`` column, or one ``votes_<label>`` column per class.

* ``votes`` holds a JSON object of category → weight in each cell, ``{"angry": 2, "sad": 1}``
  (in a CSV quoted like any text with commas: ``"{""angry"": 2, ""sad"": 1}"``); a JSON Lines
  row may hold the object itself, and a Parquet column may be a struct (a null field is no
  vote for that category). ``--columns votes=<column>`` reads another column.
* ``votes_<label>`` (``votes_`` in any case) holds the weight of one category, named by what
  follows the prefix (``votes_angry``, ``votes_3``); an empty cell is no vote for it.

The weights are the annotators' summed weights as the user counted them (counts, or the
fractions of the rule in `peft_ser.corpora.votes`): finite numbers of 0 or more. Category names
are read by the rule of `peft_ser.corpora.cells` (``3.0`` is ``3``) and map into the label set
as the label column's spellings do. A row whose vote cells are all empty has no votes. A cell
that is no JSON object, or a weight that is no finite number of 0 or more, makes the row
malformed (`ValueError` naming the column, which the table parser reports with the line);
a table with both forms is refused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from peft_ser.corpora.base import CorpusError
from peft_ser.corpora.cells import text_cell
from peft_ser.data.vote_columns import vote_weight

VOTES = "votes"
"""Our name of the column holding a JSON object of votes per row."""
CLASS_PREFIX = "votes_"
"""The prefix of a column holding one category's weight."""


@dataclass(frozen=True)
class VoteColumns:
    """Where a table keeps its votes: the ``votes`` column, or category → its column."""

    column: str | None = None
    per_class: Mapping[str, str] | None = None

    @property
    def present(self) -> bool:
        return self.column is not None or bool(self.per_class)


def vote_columns(path: Path, header: Sequence[str], column: str | None) -> VoteColumns:
    """The table's vote columns: ``column`` (its ``votes`` column, when it has one) or the
    ``votes_<label>`` columns of ``header``; `CorpusError` when it has both."""
    per_class = {
        text_cell(name[len(CLASS_PREFIX) :]): name
        for name in header
        if name.lower().startswith(CLASS_PREFIX) and name[len(CLASS_PREFIX) :].strip()
    }
    if column is not None and per_class:
        raise CorpusError(
            f"{path}: both a {column!r} column and votes_<label> columns "
            f"({', '.join(per_class.values())}); keep one form of votes"
        )
    return VoteColumns(column, per_class or None)


def row_votes(cells: Mapping[str, object], columns: VoteColumns) -> dict[str, float] | None:
    """The row's votes by category, summed where two names read alike (``3`` and ``3.0``);
    None when its vote cells are empty. `ValueError` naming the column for a bad cell."""
    if columns.column is not None:
        return _object_votes(cells.get(columns.column), columns.column)
    votes: dict[str, float] = {}
    for name, column in (columns.per_class or {}).items():
        weight = _cell_weight(cells.get(column), column)
        if weight is not None:
            votes[name] = votes.get(name, 0.0) + weight
    return votes or None


def _object_votes(value: object, column: str) -> dict[str, float] | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (json.JSONDecodeError, RecursionError):
            raise ValueError(f"{column} {_shown(value)} is not a JSON object") from None
    if not isinstance(value, dict):
        raise ValueError(f"{column} holds {_shown(value)}, not a JSON object of weights")
    votes: dict[str, float] = {}
    for name, weight in value.items():
        category = text_cell(str(name))
        if weight is not None:
            number = _number(weight, f"{column} {category!r}")
            votes[category] = votes.get(category, 0.0) + number
    return votes


def _cell_weight(value: object, column: str) -> float | None:
    """One ``votes_<label>`` cell: None when empty (empty text, null, NaN), else its weight."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{column} {_shown(value)} is not a number") from None
    return _number(value, column)


def _number(value: object, what: str) -> float:
    """``value`` as a weight (`vote_weight`), else `ValueError` naming ``what`` and the value."""
    try:
        return vote_weight(value)
    except ValueError as problem:
        raise ValueError(f"{what} {_shown(value)} {problem}") from None


def _shown(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
