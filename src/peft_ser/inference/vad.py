"""Speech regions of a recording, found by Silero VAD over a stream of 16 kHz blocks.

Silero VAD (the ``silero-vad`` package, MIT licence) ships its model inside the package, so
nothing is downloaded: `load_silero_vad` reads the TorchScript file installed with it, as
trusted as the package's code. The model scores 32-ms frames (512 samples) one after the other,
keeping its state between them. ``silero_vad.get_speech_timestamps`` is that loop over one
in-memory tensor followed by ``get_speech_timestamps_from_probs``; `SpeechDetector` runs the
same loop over blocks as they are decoded, keeping one partial frame between blocks, and calls
the same second half, so an hour-long file never sits in memory and the regions are the ones
`get_speech_timestamps` finds on the whole recording.

The model runs on one thread, as Silero intends: its per-frame work is tiny, and on two
threads the loop measured about 18x slower here. The caller's thread count is restored after.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np
import torch

from peft_ser.data.audio import SAMPLE_RATE
from peft_ser.inference.segments import Span

FRAME = 512
"""Samples per frame scored at 16 kHz (Silero's fixed frame)."""
THRESHOLD = 0.5
"""Speech probability from which a frame counts as speech (Silero's default)."""
MIN_SPEECH_SECONDS = 0.25
"""Shorter detections are dropped as clicks and breaths (Silero's default)."""
MIN_SILENCE_SECONDS = 0.3
"""A region ends after this much silence. Silero's default (0.1 s) cuts at pauses between
words; 0.3 s keeps a sentence whole and still parts sentences."""
SPEECH_PAD_SECONDS = 0.03
"""Each region is widened by this much on either side (Silero's default), so onsets and the
fading ends of words are kept."""


@contextmanager
def _one_thread() -> Iterator[None]:
    """Torch on one thread for the block, then the caller's thread count again."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@cache
def _silero() -> Any:
    """The packaged Silero model, loaded once. Importing ``silero_vad`` sets torch to one
    thread for the whole process; that is undone, so the emotion model keeps its threads. The
    loader's deprecation warnings (``importlib.resources.path``, ``torch.jit.load``) concern
    Silero's code, not the caller's, so they are not passed on."""
    with _one_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from silero_vad import load_silero_vad

        return load_silero_vad()


class SpeechDetector:
    """Feed 16 kHz mono blocks of any length in order, then ask for the speech regions."""

    def __init__(self) -> None:
        self._model = _silero()
        self._model.reset_states()
        self._carry = np.zeros(0, dtype=np.float32)
        self._probabilities: list[float] = []
        self.num_samples = 0

    def feed(self, block: np.ndarray) -> None:
        """Score every whole frame the block completes; keep the rest for the next block."""
        self.num_samples += len(block)
        samples = np.concatenate([self._carry, block.astype(np.float32, copy=False)])
        whole = len(samples) - len(samples) % FRAME
        self._score(samples[:whole])
        self._carry = samples[whole:]

    def _score(self, samples: np.ndarray) -> None:
        frames = torch.from_numpy(np.ascontiguousarray(samples)).view(-1, FRAME)
        with torch.inference_mode():
            self._probabilities.extend(
                float(self._model(frame, SAMPLE_RATE).item()) for frame in frames
            )

    def regions(self, max_seconds: float = float("inf")) -> list[Span]:
        """Speech regions in samples; a region longer than ``max_seconds`` is cut at its
        longest pause (Silero's rule). The last partial frame is zero-padded, as Silero does."""
        from silero_vad import get_speech_timestamps_from_probs

        if len(self._carry):
            padded = np.zeros(FRAME, dtype=np.float32)
            padded[: len(self._carry)] = self._carry
            self._score(padded)
            self._carry = np.zeros(0, dtype=np.float32)
        found = get_speech_timestamps_from_probs(
            self._probabilities,
            sampling_rate=SAMPLE_RATE,
            threshold=THRESHOLD,
            min_speech_duration_ms=round(MIN_SPEECH_SECONDS * 1000),
            max_speech_duration_s=max_seconds,
            min_silence_duration_ms=round(MIN_SILENCE_SECONDS * 1000),
            speech_pad_ms=round(SPEECH_PAD_SECONDS * 1000),
            audio_length_samples=self.num_samples,
        )
        return [(int(region["start"]), int(region["end"])) for region in found]


def detect_speech(
    blocks: Iterable[np.ndarray], max_seconds: float = float("inf")
) -> tuple[list[Span], int]:
    """Speech regions of a stream of 16 kHz blocks, and its length in samples; consumes it."""
    with _one_thread():
        detector = SpeechDetector()
        for block in blocks:
            detector.feed(block)
        return detector.regions(max_seconds), detector.num_samples
