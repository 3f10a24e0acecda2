"""Annotator votes: the rule that turns each rater's categorical choices into weights.

Corpora ship every annotator's answer next to the consensus label. peft-ser keeps them as
votes, one rule for every corpus:

* every annotator weighs 1, split evenly over the distinct categories they chose (an answer of
  two categories gives each 0.5); an annotator listed twice for one utterance counts once, by
  their first answer, and one who chose nothing adds nothing;
* the weights of one category are summed over annotators (`annotator_votes`, in the corpus's
  own codes, ``Entry.raw_votes``);
* the corpus's label mapping then applies, as it does to the consensus code (IEMOCAP's
  ``exc`` counts as Happy in the paper's four classes), and the weight on codes outside the
  label space is summed under ``other`` (`label_votes`, ``Utterance.votes``).

Who counts as an annotator (not the speaker's own self-evaluation, for one) and how a line
names its categories is each corpus module's to say; a line a module cannot read counts no
vote and is named in one warning (`unread_note`).

``prepare --targets distribution`` also keeps an utterance whose consensus is outside the label
set (no agreement, other) when some annotator chose a label of the set (`kept_for_votes`); it
carries the label `VOTES_ONLY`, so class and attribute tasks leave it out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from peft_ser.corpora import base
from peft_ser.corpora.base import Entry, Problem
from peft_ser.data.manifest import Utterance
from peft_ser.data.vote_columns import OTHER_VOTES, VOTES_ONLY, in_set_weight

__all__ = [
    "annotator_votes",
    "first_answers",
    "in_set_weight",
    "kept_for_votes",
    "label_votes",
    "unread_note",
    "with_votes",
]

LabelOf = Callable[[str], str | None]
"""A corpus code's label in the label space, or None when the code is outside it."""
KEEPS_FOR_VOTES = frozenset({base.NO_AGREEMENT, base.OUTSIDE_LABEL_SET})
"""Why a consensus may be outside the label set and its utterance still kept for its votes:
the annotators did not agree, or agreed on a class outside the set. An unknown code is a
damaged row, not a disagreement, and stays excluded."""


def annotator_votes(choices: Iterable[Sequence[str]]) -> dict[str, float]:
    """Summed weights per code over annotators, each annotator's 1 split over their distinct
    choices; an annotator who chose nothing adds nothing."""
    votes: dict[str, float] = {}
    for chosen in choices:
        distinct = list(dict.fromkeys(chosen))
        for code in distinct:
            votes[code] = votes.get(code, 0.0) + 1.0 / len(distinct)
    return votes


def first_answers(answers: Iterable[tuple[str, Sequence[str]]]) -> list[Sequence[str]]:
    """Each annotator's first answer, from ``(annotator, choices)`` pairs in file order: a
    rater listed twice for one utterance (MSP-IMPROV's label file repeats some rater lines)
    counts once."""
    first: dict[str, Sequence[str]] = {}
    for annotator, chosen in answers:
        first.setdefault(annotator, chosen)
    return list(first.values())


def label_votes(
    raw_votes: dict[str, float], label_of: LabelOf, labels: Sequence[str]
) -> dict[str, float]:
    """``raw_votes`` in the label space ``labels``: every label's weight in label order (0.0
    when nobody chose it), then `OTHER_VOTES`; ``label_of`` maps a code to its label, or None
    when the code is outside the label space."""
    votes = dict.fromkeys(labels, 0.0)
    votes[OTHER_VOTES] = 0.0
    for code, weight in raw_votes.items():
        label = label_of(code)
        votes[label if label in votes and label != OTHER_VOTES else OTHER_VOTES] += weight
    return votes


def kept_for_votes(entry: Entry, reason: str, label_of: LabelOf, labels: Sequence[str]) -> bool:
    """Whether a row whose consensus is outside the label space for ``reason`` is kept for
    its votes: the consensus is a disagreement or a class outside the set, and some annotator
    chose one of ``labels``."""
    if reason not in KEEPS_FOR_VOTES or entry.raw_votes is None:
        return False
    return in_set_weight(label_votes(entry.raw_votes, label_of, labels)) > 0


def with_votes(
    utterances: Sequence[Utterance], label_of: LabelOf, labels: Sequence[str]
) -> tuple[list[Utterance], list[Problem]]:
    """Every utterance with its ``votes`` in the label space ``labels`` (the classes kept), and
    as problems the utterances kept for their votes alone whose every in-set vote was on a
    class left out (``rare_label``)."""
    kept: list[Utterance] = []
    dropped = []
    for u in utterances:
        votes = None if u.raw_votes is None else label_votes(u.raw_votes, label_of, labels)
        if u.label == VOTES_ONLY and not (votes and in_set_weight(votes)):
            detail = "kept for its votes alone, but all of them are on classes left out"
            dropped.append(Problem(u.key, u.path, base.RARE_LABEL, detail))
        else:
            kept.append(u if votes is None else replace(u, votes=votes))
    return kept, dropped


def unread_note(what: str, unread: Sequence[str]) -> list[str]:
    """The warning that ``unread`` lines (``<file> line <n>: <text>``) of ``what`` could not be
    read and count no vote: none when every line was read."""
    if not unread:
        return []
    first = "; ".join(unread[:3]) + ("; …" if len(unread) > 3 else "")
    return [f"{len(unread)} {what} could not be read and count no vote: {first}"]
