"""What the manifest's vote columns hold: category names to summed annotator weights.

``raw_votes`` names the corpus's own codes, ``votes`` the labels of the label space and
`OTHER_VOTES` (`peft_ser.corpora.votes` gives the rule that fills them); both are JSON objects
in ``manifest.csv``. An utterance kept for its votes alone carries the label `VOTES_ONLY`.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal

OTHER_VOTES = "other"
"""The key of ``Utterance.votes`` that holds the weight on categories outside the label space."""
VOTES_ONLY = ""
"""The label of an utterance kept for its votes alone (``prepare --targets distribution``): its
consensus is outside the label space, but some annotator chose a label of it."""


def parse_votes(text: str) -> dict[str, float]:
    """A vote column's JSON object: category names to finite, non-negative weights."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"votes {text!r} are not a JSON object") from None
    if not isinstance(document, dict):
        raise ValueError(f"votes {text!r} are not a JSON object")
    votes = {}
    for name, weight in document.items():
        try:
            votes[name] = vote_weight(weight)
        except ValueError as problem:
            raise ValueError(f"votes {text!r}: {name!r} {problem}") from None
    return votes


def vote_weight(value: object) -> float:
    """``value`` as one category's weight: a finite number of 0 or more (not a boolean), else
    `ValueError` saying what it is not (the caller names the cell)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("is not a number")
    try:
        number = float(value)
    except OverflowError:  # an integer of 400 digits
        number = math.inf
    if not math.isfinite(number) or number < 0:
        raise ValueError("is not a finite weight of 0 or more")
    return number


def in_set_weight(votes: dict[str, float]) -> float:
    """The weight annotators gave to labels of the label space (all but `OTHER_VOTES`)."""
    return sum(weight for name, weight in votes.items() if name != OTHER_VOTES)
