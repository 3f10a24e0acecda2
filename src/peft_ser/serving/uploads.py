"""An uploaded clip, from the request body to 16 kHz mono samples, within the server's limits.

The body is streamed into a file of the server's temporary directory under a random name
(the client's file name is only ever a label), decoded block by block with `stream_audio` and
removed, whatever happens (a body that stops arriving included). The header is read first, so a
recording longer than the duration limit, or one that would decode to more samples (rate ×
channels × duration) than the budget, is refused before it is decoded: a small file of 192 kHz
and 8 channels cannot fill the memory. Decoding in blocks keeps only the 16 kHz mono samples,
never the whole recording at its own rate. Every refusal is an `UploadError` with the HTTP
status it stands for.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np
from starlette.concurrency import run_in_threadpool

from peft_ser.data.audio import AudioError, AudioInfo, probe, stream_audio

SUPPORTED = "WAV, FLAC, OGG (Vorbis, Opus), MP3 and the other formats of libsndfile"


class UploadError(Exception):
    """An upload the server refuses; ``status`` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Clip:
    source: str
    samples: np.ndarray


def display_name(filename: str | None, fallback: str = "upload") -> str:
    """The client's file name without any folders, used only to label the answer."""
    name = PurePath((filename or "").replace("\\", "/")).name.strip()
    return name or fallback


@dataclass(frozen=True)
class AudioLimits:
    """The longest recording, in seconds, and the most samples (frames × channels) it may
    decode to."""

    max_seconds: float
    max_samples: int


async def read_clip(
    chunks: AsyncIterator[bytes], source: str, folder: Path, limits: AudioLimits
) -> Clip:
    """Decode a streamed upload; raises `UploadError` (415 undecodable, 413 too long or too
    many samples, 422 empty or unusable audio). The temporary file is removed however this
    ends, cancelled included."""
    handle, name = tempfile.mkstemp(dir=folder, suffix=".upload")
    path = Path(name)
    try:
        size = 0
        with os.fdopen(handle, "wb") as file:
            async for chunk in chunks:
                size += len(chunk)
                file.write(chunk)
        if size == 0:
            raise UploadError(
                422, "empty body: send the audio as the request body or as the form field 'file'"
            )
        samples = await run_in_threadpool(_decode, path, source, limits)
    finally:
        path.unlink(missing_ok=True)
    return Clip(source, samples)


def _decode(path: Path, source: str, limits: AudioLimits) -> np.ndarray:
    try:
        _refuse_beyond(probe(path), source, limits)
        return np.concatenate(list(stream_audio(path)))
    except AudioError as error:
        if error.kind == "unreadable":
            raise UploadError(
                415,
                f"{source}: not audio this server can decode ({error.problem}); send {SUPPORTED}",
            ) from None
        raise UploadError(422, f"{source}: {error.problem}") from None


def _refuse_beyond(info: AudioInfo, source: str, limits: AudioLimits) -> None:
    if info.duration > limits.max_seconds:
        raise UploadError(
            413,
            f"{source}: {info.duration:.1f} s of audio; this server takes at most "
            f"{limits.max_seconds:g} s",
        )
    samples = info.frames * info.channels
    if samples > limits.max_samples:
        raise UploadError(
            413,
            f"{source}: {samples} samples to decode ({info.sample_rate} Hz × {info.channels} "
            f"channels × {info.duration:.1f} s); this server decodes at most "
            f"{limits.max_samples} per recording",
        )
