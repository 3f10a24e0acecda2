"""The emotion timeline of recordings as a PNG: probabilities over time, segments by label.

One panel per recording, time in seconds across. Each label's probability is a line through
its segments' midpoints, broken where silence lies between segments (speech segments); a strip
below the zero line colours each segment by its predicted label, in the colour of that label's
line (`palette`: tied to the label's name), so where the speaker was angry reads at a glance.
A clip predicted whole is one segment.
Rendered with matplotlib's Agg canvas (no display, no pyplot state) and written atomically.
"""

from __future__ import annotations

import io
import itertools
import math
import os
from collections.abc import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from peft_ser.inference.palette import palette
from peft_ser.inference.predict import Prediction, WindowPrediction
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import write_atomic

MAX_RECORDINGS = 12
"""Panels in one figure; more would be too small to read."""
_STRIP = (-0.11, -0.03)
"""Where the label strip lies, in probability units: below 0, clear of every line."""


class TimelineError(UserError, ValueError):
    """A timeline that cannot be drawn as asked (too many recordings for one figure)."""


def check_plottable(count: int) -> None:
    """Refuse, before any work, more recordings than one figure shows legibly."""
    if count > MAX_RECORDINGS:
        raise TimelineError(
            f"a timeline shows at most {MAX_RECORDINGS} recordings; got {count} inputs "
            "(plot fewer at a time)"
        )


def timeline_figure(predictions: Sequence[Prediction]) -> Figure:
    """The timelines of ``predictions`` (at most `MAX_RECORDINGS`), one panel each."""
    check_plottable(len(predictions))
    figure = Figure(figsize=(10, 0.5 + 2.4 * max(1, len(predictions))), layout="constrained")
    axes = figure.subplots(max(1, len(predictions)), 1, squeeze=False)[:, 0]
    for panel, prediction in zip(axes, predictions, strict=False):
        _draw(panel, prediction)
    return figure


def save_timeline(predictions: Sequence[Prediction], path: str | os.PathLike[str]) -> None:
    """Draw the timelines and write the PNG atomically: readers never see a partial file."""
    buffer = io.BytesIO()
    timeline_figure(predictions).savefig(buffer, format="png", dpi=110)
    write_atomic(path, buffer.getvalue())


def _segments(prediction: Prediction) -> list[WindowPrediction]:
    if prediction.windows:
        return prediction.windows
    whole = WindowPrediction(0.0, prediction.duration, prediction.label, prediction.probabilities)
    return [whole]


def _draw(panel: Axes, prediction: Prediction) -> None:
    segments = _segments(prediction)
    labels = list(prediction.probabilities)
    colours = palette(labels)
    spans = _visible_spans(segments)
    for label in labels:
        times, values = _steps(spans, [segment.probabilities[label] for segment in segments])
        panel.plot(times, values, color=colours[label], label=label)
    for segment, (start, end) in zip(segments, spans, strict=True):
        panel.fill_between((start, end), *_STRIP, color=colours[segment.label], linewidth=0)
    panel.set_xlim(0.0, max(prediction.duration, 1e-3))
    panel.set_ylim(_STRIP[0], 1.0)
    panel.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])
    panel.set_ylabel("probability")
    panel.set_xlabel("time (s)")
    panel.set_title(f"{prediction.source}: {prediction.label} overall", loc="left", fontsize=9)
    panel.legend(loc="upper right", fontsize=8, ncols=len(labels))


def _visible_spans(segments: Sequence[WindowPrediction]) -> list[tuple[float, float]]:
    """Where each segment is drawn: from its start to its end, or to the next one's start when
    they overlap (windows), so every moment shows one segment's answer."""
    ends = [
        min(segment.end, following.start) for segment, following in itertools.pairwise(segments)
    ]
    ends.append(segments[-1].end)
    return [(segment.start, end) for segment, end in zip(segments, ends, strict=True)]


def _steps(
    spans: Sequence[tuple[float, float]], values: Sequence[float]
) -> tuple[list[float], list[float]]:
    """A line holding each value across its span; a NaN point (a gap in the line) where
    silence lies between two spans."""
    times: list[float] = []
    heights: list[float] = []
    for (start, end), value in zip(spans, values, strict=True):
        if times and start > times[-1]:
            times.append(math.nan)
            heights.append(math.nan)
        times += [start, end]
        heights += [value, value]
    return times, heights
