"""What a corpus is prepared for: class labels, attribute ratings, both, or the annotators'
vote distributions (``--targets``).

For ``categorical`` (the default) nothing changes: every utterance needs a label of the label
set, and the ratings and votes a corpus has are kept in the manifest anyway. ``distribution``
needs a corpus that ships per-annotator labels: it keeps what ``categorical`` keeps, and also
the utterances whose consensus is outside the label set but which some annotator placed in
it (`peft_ser.corpora.votes`); the folds of the others stay those of ``categorical``.

An attribute task (``attributes`` or ``both``) also needs every rating the corpus has (all three
for a research corpus, the attribute columns of a table): an utterance without one is excluded
as ``no_attribute_ratings``. For ``attributes`` alone the class label is not a target, so an
utterance whose label is outside the label set (MSP-Podcast's ``X``, no agreement, and ``O``,
other) keeps its ratings, with its raw code as its label (``none`` when it has no label at all,
as a table row with an empty label cell or without a label column).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from peft_ser.corpora.base import CorpusError, Entry
from peft_ser.data.manifest import ATTRIBUTE_TARGETS, ATTRIBUTES, TARGETS, Utterance
from peft_ser.data.vote_columns import VOTES_ONLY


def check_choice(targets: str) -> None:
    """`CorpusError` unless ``targets`` is one of `TARGETS`."""
    if targets not in TARGETS:
        raise CorpusError(f"--targets {targets!r}: choose one of {', '.join(TARGETS)}")


def check_targets(
    targets: str, title: str, attribute_scale: str, rated: tuple[str, ...] = ATTRIBUTES
) -> tuple[str, ...]:
    """The attributes ``targets`` asks of a corpus that rates ``rated`` (a research corpus
    rates all three; a table the ones it has columns for): none for ``categorical`` and
    ``distribution``. `CorpusError` for an unknown choice or attribute targets on a corpus
    without ratings."""
    check_choice(targets)
    if targets not in ATTRIBUTE_TARGETS:
        return ()
    if not attribute_scale or not rated:
        raise CorpusError(
            f"--targets {targets}: {title} has no attribute ratings (arousal, valence, "
            "dominance); use --targets categorical"
        )
    return rated


def check_votes(targets: str, title: str, votes: str) -> None:
    """`CorpusError` for ``--targets distribution`` on a corpus that ships no per-annotator
    labels (``votes`` says where a corpus's come from; empty: nowhere)."""
    if targets == "distribution" and not votes:
        raise CorpusError(
            f"--targets distribution: {title} ships no per-annotator labels to count votes "
            "from; use --targets categorical"
        )


def require_votes(targets: str, entries: Sequence[Entry], where: str, votes: str) -> None:
    """`CorpusError` for ``--targets distribution`` when no row of ``entries`` (read from
    ``where``) carries votes, though the corpus may ship them (from ``votes``)."""
    if targets == "distribution" and all(entry.raw_votes is None for entry in entries):
        raise CorpusError(
            f"--targets distribution: no label row of {where} carries annotator votes (read "
            f"from {votes}); use --targets categorical"
        )


def is_rated(entry: Entry, attributes: Sequence[str]) -> bool:
    """Whether the row carries every rating the task needs."""
    return all(getattr(entry, name) is not None for name in attributes)


def uses_labels(targets: str) -> bool:
    """Whether class labels are a target, so a row outside the label set is excluded."""
    return targets != "attributes"


def unmapped_label(raw: str) -> str:
    """The label an attribute-only utterance outside the label set carries: its raw code."""
    return raw or "none"


def label_names(names: Sequence[str], utterances: Sequence[Utterance]) -> list[str]:
    """The label set's names, then (attribute-only corpora) the raw codes utterances carry;
    an utterance kept for its votes alone names no class."""
    extra = sorted({u.label for u in utterances} - set(names) - {VOTES_ONLY})
    return [*names, *extra]


def attribute_summary(
    utterances: Sequence[Utterance], attributes: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Mean, standard deviation, minimum and maximum of each rating over ``utterances``."""
    summary = {}
    for name in attributes:
        values = np.array([getattr(u, name) for u in utterances], dtype=float)
        if values.size:
            summary[name] = {
                "mean": round(float(values.mean()), 4),
                "std": round(float(values.std()), 4),
                "min": float(values.min()),
                "max": float(values.max()),
            }
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The attribute lines of summary.txt (none for a categorical corpus)."""
    if not summary.get("attributes"):
        return []
    lines = [f"attributes ({summary['targets']}), scale {summary['attribute_scale']}:"]
    for name, stats in summary["attribute_stats"].items():
        lines.append(
            f"  {name:<10} mean {stats['mean']:.2f} sd {stats['std']:.2f} "
            f"range {stats['min']:g}-{stats['max']:g}"
        )
    return lines
