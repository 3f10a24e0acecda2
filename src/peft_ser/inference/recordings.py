"""Recordings to scored segments with bounded memory, whatever their length.

Each recording is read twice as a stream of 16 kHz blocks. The first pass checks it, counts its
samples and, in ``vad`` mode, finds its speech; from that the segments are planned
(`.segments`). The second pass cuts the planned segments out of the stream, keeping
only the current segment's samples. A recording short enough to keep (`KEEP_SECONDS`) is kept
from the first pass instead of decoded again. Segments wait in a pool shared by consecutive
recordings, so short clips still fill batches; the pool is scored when it holds ``pool_size``
segments. Memory is thus the pool and one segment being cut, never a whole recording (except in
``whole`` mode, which asks for it).

Results come out in input order: a recording's result is yielded once all its segments are
scored, a recording that cannot be used as the `AudioError` that says why.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from peft_ser.data.audio import SAMPLE_RATE, AudioError
from peft_ser.inference.segments import MIN_SAMPLES, SegmentPlan, Span
from peft_ser.utils.errors import InvalidRequestError

KEEP_SECONDS = 60.0
"""A recording up to this long is kept from the first pass (3.8 MB at 16 kHz) rather than
decoded a second time."""

Classify = Callable[[list[np.ndarray]], np.ndarray]
"""Segments' samples to class probabilities ``[N, C]``, in the segments' order."""


@dataclass(frozen=True)
class Recording:
    """One input: its name, and a way to read it (again) as 16 kHz mono blocks.

    ``blocks()`` may raise `AudioError` at any block, or after the last one (non-finite
    samples are counted over the whole file). ``in_memory``: the samples are in memory anyway
    (an array input), so the first pass keeps them all.
    """

    name: str
    blocks: Callable[[], Iterable[np.ndarray]]
    in_memory: bool = False


@dataclass(frozen=True)
class Scored:
    """A recording's segments and their probabilities, one row per span."""

    name: str
    num_samples: int
    spans: list[Span]
    probabilities: np.ndarray


@dataclass
class _Pending:
    """A recording whose segments are being scored: its rows fill in as batches finish."""

    name: str
    num_samples: int
    spans: list[Span]
    rows: list[np.ndarray | None] = field(default_factory=list)
    error: AudioError | None = None

    @property
    def done(self) -> bool:
        return self.error is not None or all(row is not None for row in self.rows)


def score_recordings(
    recordings: Iterable[Recording], plan: SegmentPlan, classify: Classify, pool_size: int
) -> Iterator[Scored | AudioError]:
    """Each recording's `Scored` segments, or the `AudioError` why it cannot be used, in order."""
    waiting: deque[_Pending | AudioError] = deque()
    pool: list[tuple[_Pending, int, np.ndarray]] = []
    for recording in recordings:
        try:
            pending, source = _first_pass(recording, plan)
        except AudioError as error:
            waiting.append(error)
            yield from _finished(waiting)
            continue
        waiting.append(pending)
        try:
            for index, samples in enumerate(cut_spans(source(), pending.spans)):
                pool.append((pending, index, samples))
                if len(pool) >= pool_size:
                    _score(pool, classify)
                    yield from _finished(waiting)
        except AudioError as error:  # the file changed or broke between the passes
            pending.error = error
        yield from _finished(waiting)
    _score(pool, classify)
    yield from _finished(waiting)


def _first_pass(
    recording: Recording, plan: SegmentPlan
) -> tuple[_Pending, Callable[[], Iterable[np.ndarray]]]:
    """Check and measure the recording (and find its speech), plan its segments, and say how
    to read it for cutting: from what was kept, or by decoding it again."""
    kept = _Keeper(None if recording.in_memory else round(KEEP_SECONDS * SAMPLE_RATE))
    blocks = kept.watch(recording.blocks())
    if plan.mode == "vad":
        from peft_ser.inference.vad import (
            detect_speech,  # torch and the VAD model only when asked for
        )

        speech, num_samples = detect_speech(blocks, plan.max_length / SAMPLE_RATE)
    else:
        speech, num_samples = [], sum(len(block) for block in blocks)
    name = recording.name
    if num_samples < MIN_SAMPLES:
        problem = f"too short to classify ({num_samples} samples at 16 kHz)"
        raise AudioError(name, problem, "empty")
    if plan.mode == "whole" and plan.limit is not None and num_samples > plan.limit:
        problem = (
            f"{num_samples / SAMPLE_RATE:.1f} s is longer than this model encodes "
            f"({plan.limit / SAMPLE_RATE:g} s); use segment 'window' or 'vad'"
        )
        raise AudioError(name, problem, "too_long")
    try:
        spans = plan.spans(num_samples, speech)
    except InvalidRequestError as error:
        raise AudioError(name, str(error), "too_many_segments") from None
    if not spans:
        raise AudioError(name, "no speech found by the voice-activity detector", "no_speech")
    pending = _Pending(name, num_samples, spans, [None] * len(spans))
    return pending, (kept.replay if kept.complete else recording.blocks)


class _Keeper:
    """Passes blocks through, keeping them while their total stays within ``limit`` samples
    (None: all of them)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.blocks: list[np.ndarray] = []
        self.size = 0
        self.complete = True

    def watch(self, blocks: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for block in blocks:
            if self.complete:
                self.size += len(block)
                self.complete = self.limit is None or self.size <= self.limit
                if self.complete:
                    self.blocks.append(block)
                else:
                    self.blocks.clear()
            yield block

    def replay(self) -> list[np.ndarray]:
        return self.blocks


def cut_spans(blocks: Iterable[np.ndarray], spans: Sequence[Span]) -> Iterator[np.ndarray]:
    """The samples of each span (sorted by start; they may overlap) from a stream of blocks.

    Only the samples from the current span's start on are kept: memory is one span plus one
    block, however long the stream. A span past the stream's end is cut short.
    """
    stream = iter(blocks)
    buffer = np.zeros(0, dtype=np.float32)
    offset = 0  # the stream position of buffer[0]
    for start, end in spans:
        while True:
            drop = min(max(start - offset, 0), len(buffer))
            buffer, offset = buffer[drop:], offset + drop
            if offset + len(buffer) >= end:
                break
            block = next(stream, None)
            if block is None:
                break
            buffer = np.concatenate([buffer, block])
        yield buffer[start - offset : end - offset].copy()


def _score(pool: list[tuple[_Pending, int, np.ndarray]], classify: Classify) -> None:
    """Score the pooled segments and file each row with its recording; empty the pool."""
    if not pool:
        return
    probabilities = classify([samples for _, _, samples in pool])
    for (pending, index, _), row in zip(pool, probabilities, strict=True):
        pending.rows[index] = row
    pool.clear()


def _finished(waiting: deque[_Pending | AudioError]) -> Iterator[Scored | AudioError]:
    """Yield the recordings at the front of the queue whose results are complete."""
    while waiting and (isinstance(waiting[0], AudioError) or waiting[0].done):
        item = waiting.popleft()
        if isinstance(item, AudioError):
            yield item
        elif item.error is not None:
            yield item.error
        else:
            rows = np.stack([row for row in item.rows if row is not None])
            yield Scored(item.name, item.num_samples, item.spans, rows)
