"""Annotator votes: the rule that turns each rater's categorical choices into weights.

Corpora ship every annotator's answer next to the consensus label. peft-ser keeps them as
votes, one rule for every corpus:

* every annotator weighs 1, split evenly over the distinct categories they chose (an answer of
  two categories gives each 0.5);
* the weights of one category are summed over annotators (`annotator_votes`, in the corpus's
  own codes, ``Entry.raw_votes``);
* the corpus's label mapping then applies, as it does to the consensus code (IEMOCAP's
  ``exc`` counts as Happy in the paper's four classes), and the weight on codes outside the
  label space is summed under ``other`` (`label_votes`, ``Utterance.votes``).

Who counts as an annotator (not the speaker's own self-evaluation, for one) is each corpus
module's to say.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from peft_ser.data.manifest import OTHER_VOTES


def annotator_votes(choices: Iterable[Sequence[str]]) -> dict[str, float]:
    """Summed weights per code over annotators, each annotator's 1 split over their distinct
    choices; an annotator who chose nothing adds nothing."""
    votes: dict[str, float] = {}
    for chosen in choices:
        distinct = list(dict.fromkeys(chosen))
        for code in distinct:
            votes[code] = votes.get(code, 0.0) + 1.0 / len(distinct)
    return votes


def label_votes(
    raw_votes: dict[str, float], label_of: Callable[[str], str | None], labels: Sequence[str]
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


def in_set_weight(votes: dict[str, float]) -> float:
    """The weight annotators gave to labels of the label space (all but `OTHER_VOTES`)."""
    return sum(weight for name, weight in votes.items() if name != OTHER_VOTES)
