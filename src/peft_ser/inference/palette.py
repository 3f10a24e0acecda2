"""One colour per emotion label, tied to the label's name, not to its position.

Every picture that colours classes (the timeline) takes its colours here, so a label keeps its
colour whatever the order of a model's classes and whichever labels sit beside it. The common
emotions get their conventional colours (anger red, sadness blue, happiness gold, neutral grey,
and so on), whatever the corpus calls them (``Angry``, ``ang``, ``anger``); every other label
takes one of the remaining colours, in the order of the label set's sorted names, so a label
set is always coloured the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

CONVENTIONAL = {
    "angry": "#d62728",
    "sad": "#1f77b4",
    "happy": "#e6a700",
    "neutral": "#7f7f7f",
    "fear": "#9467bd",
    "disgust": "#2ca02c",
    "surprise": "#ff7f0e",
    "calm": "#17becf",
    "contempt": "#8c564b",
    "excited": "#e377c2",
    "frustrated": "#bcbd22",
}
"""The conventional colours (matplotlib's tab10, anger red, happiness a readable gold)."""

SYNONYMS = {
    "ang": "angry", "anger": "angry", "sadness": "sad", "hap": "happy", "happiness": "happy",
    "joy": "happy", "neu": "neutral", "fearful": "fear", "fru": "frustrated",
    "exc": "excited", "disgusted": "disgust", "surprised": "surprise", "sur": "surprise",
    "fea": "fear", "dis": "disgust",
}  # fmt: skip
"""Other spellings of the conventional labels in the corpora and their papers."""

OTHERS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#5254a3", "#8ca252", "#bd9e39")
"""Colours left for other labels (tab20b's dark tones, clear of the conventional ones), then
repeated."""


def conventional(label: str) -> str | None:
    """The conventional colour of ``label`` (any case or common spelling), or None."""
    name = label.strip().lower()
    return CONVENTIONAL.get(SYNONYMS.get(name, name))


def palette(labels: Sequence[str]) -> dict[str, str]:
    """Each label's colour (``#rrggbb``)."""
    colours = {label: colour for label in labels if (colour := conventional(label))}
    others = sorted(label for label in set(labels) if label not in colours)
    for index, label in enumerate(others):
        colours[label] = OTHERS[index % len(OTHERS)]
    return colours
