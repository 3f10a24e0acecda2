"""The one rule by which a table's speaker and label cells become text.

A table written by hand, by pandas or by a spreadsheet spells the same speaker in several
ways: ``3`` in one JSON line and ``3.0`` in the next, ``3`` in a Parquet integer column and
``"3.0"`` in a CSV. Read as they are written, those are two speakers, and speaker 3 then
lands on both sides of a fold. So a speaker or label cell is read by one rule, whatever the
format:

* a number (a JSON or Parquet integer or float, or text written as a plain decimal number:
  ``3``, ``3.0``, ``+3``, ``3e0``) is written as that number: a whole number as an integer
  without a fraction (``3``), any other as Python writes the float (``3.5``, ``0.25``);
* text that is no plain number is kept as written, stripped of surrounding whitespace;
  digits with a leading zero (``007``, ``01``) are a code, not a number, and stay as
  written, so RAVDESS-style codes and ``--labels 01=...`` keep working;
* an empty cell, a null and a NaN are missing (an empty label; the unknown speaker);
* a boolean, a list, an object or anything else that is not one text or number is refused
  (`CorpusError` naming the row and the column): ``True`` would become ``"True"`` in one
  format and ``"true"`` in another, and ``["calm"]`` is not one label.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from peft_ser.corpora.base import CorpusError

_PLAIN_NUMBER = re.compile(r"[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""A decimal number as numbers are written: no leading zeros, no ``nan``/``inf`` words."""
_INTEGER = re.compile(r"[+-]?[0-9]+")


def number_text(value: float) -> str:
    """``value`` as the rule writes a number: ``3.0`` → ``3``, ``3.5`` → ``3.5``; an
    infinite float as Python writes it (``inf``)."""
    if math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def text_cell(text: str) -> str:
    """A text cell of a speaker or label column: stripped, and a plain decimal number
    rewritten by `number_text` (``"3.0"`` → ``3``)."""
    text = text.strip()
    if not _PLAIN_NUMBER.fullmatch(text):
        return text
    if _INTEGER.fullmatch(text):
        try:
            return str(int(text))
        except ValueError:  # more digits than Python converts: a code, kept as written
            return text
    value = float(text)
    return number_text(value) if math.isfinite(value) else text


def identifier(value: object, column: str, where: str) -> str:
    """A speaker or label cell (`value` as the table's reader gives it) as text by the rule of
    this module; ``""`` when missing. ``where`` (``line 7``, ``row 6``) and ``column`` name the
    cell in the `CorpusError` for a value that is not one text or number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, str):
        return text_cell(value)
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int | float):
        return number_text(value) if isinstance(value, float) else str(value)
    elif isinstance(value, Decimal):
        return _decimal_text(value)
    elif isinstance(value, list | tuple):
        kind = "a list"
    elif isinstance(value, dict):
        kind = "an object"
    else:
        kind = f"a {type(value).__name__}"
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise CorpusError(
        f"{where}: the {column!r} column holds {kind} ({shown}); each {column} must be one text "
        "or number (write booleans and lists as the text of the class they stand for)"
    )


def _decimal_text(value: Decimal) -> str:
    """A Parquet decimal by the same rule as a float, without rounding it through one."""
    if value.is_nan():
        return ""
    if value.is_finite() and value == value.to_integral_value() and value.adjusted() < 64:
        return str(int(value))
    return text_cell(str(value))
