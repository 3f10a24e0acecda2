"""Audio input: header probing, decoding, down-mixing and resampling (cached for reuse by
`peft_ser.data.audio_cache`).

Decoding goes through libsndfile (soundfile), so wav, flac and ogg always work and mp3 works
where the installed libsndfile supports it. Every model in the project expects 16 kHz mono
float32, so `load_audio` always down-mixes and resamples (soxr, high quality): corpora such
as MSP-Podcast contain stray stereo 44.1 kHz files, and RAVDESS is 48 kHz throughout.

Corpus preparation must stay fast on hundreds of thousands of files, so `probe` reads the
header (and decodes the last frame of a FLAC, which fails when the file was cut short), and
optionally scans for silence block by block, stopping at the first block with signal:
speech files cost one block, only truly silent files are decoded fully. Files stored as
floats are the exception: they are always scanned to the end, since one NaN or ±inf sample
anywhere turns every loss, gradient and feature computed from the clip into NaN.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000
MIN_RATE = 1000
MAX_RATE = 384_000
"""The sample rates accepted from a caller: below 1 kHz there is no speech band to resample
from, above 384 kHz no audio interface records."""
SILENCE_PEAK = 10 ** (-60 / 20)
"""A file whose absolute peak stays below -60 dBFS holds no usable signal."""
FLOAT_SUBTYPES = frozenset({"FLOAT", "DOUBLE"})
"""Sample formats that can store NaN and ±inf, so `probe` scans them to the end.

Integer PCM (PCM_U8 … PCM_32, FLAC, A-law, ADPCM) has no bit pattern for them. Lossy codecs
(VORBIS, OPUS, MP3) decode to floats, but from quantised integer coefficients through finite
arithmetic: a NaN there would be a decoder bug, not data, and scanning every such file would
make `prepare` decode whole corpora. `load_audio` checks every decoded sample of every format
anyway, which costs nothing once the samples are in memory."""
_COUNT_FROM_HEADER = frozenset({"FLAC"})
"""Formats whose frame count comes from the header alone (FLAC's STREAMINFO), so a file cut
short still claims every frame; `probe` checks that their last frame decodes. libsndfile
derives the count of WAV, AIFF and the like from the data present (a cut file is simply
shorter), an OGG cut short fails to open, and an MP3's count may be an estimate from the bit
rate (a valid file could fail the check)."""
_SCAN_BLOCK = 8192
_STREAM_BLOCK = 65536
"""Frames decoded at a time by `stream_audio`: 1.4-4 s, a few hundred kB per block."""


class AudioError(Exception):
    """A file that cannot be used as audio; the message names the file and the problem.

    ``kind`` is ``missing``, ``empty`` (no bytes, no frames, or too short to resample),
    ``unreadable`` or ``non_finite`` (NaN or ±inf samples), so callers can count problems by
    cause without parsing messages.
    """

    def __init__(self, path: str | Path, problem: str, kind: str = "unreadable") -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem
        self.kind = kind


@dataclass(frozen=True)
class AudioInfo:
    """What the header says, plus the silence verdict when it was asked for."""

    sample_rate: int
    channels: int
    frames: int
    silent: bool | None = None

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _describe(error: Exception) -> str:
    """libsndfile's own words, without the path soundfile prefixes (the message has it)."""
    if isinstance(error, sf.LibsndfileError):
        return f"libsndfile: {error.error_string}"
    return str(error)


def file_status(path: str | Path) -> os.stat_result:
    """``os.stat``, failing with an `AudioError` that tells a broken link from a missing file."""
    try:
        return os.stat(path)
    except FileNotFoundError as error:
        if os.path.islink(path):
            target = os.readlink(path)
            raise AudioError(path, f"broken symbolic link (to {target})", "missing") from error
        raise AudioError(path, "file does not exist", "missing") from error
    except OSError as error:
        raise AudioError(path, f"cannot read ({error.strerror})") from error


def _require_regular_file(path: str | Path) -> None:
    """Fail on what libsndfile would misreport: a broken link, a folder, a pipe (which would
    block the reader forever), an empty file."""
    status = file_status(path)
    if stat.S_ISDIR(status.st_mode):
        raise AudioError(path, "is a directory, not an audio file")
    if not stat.S_ISREG(status.st_mode):
        raise AudioError(path, "is not a regular file (a pipe, socket or device)")
    if status.st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)", "empty")


def _open(path: str | Path) -> sf.SoundFile:
    _require_regular_file(path)
    try:
        return sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(path, f"unreadable or corrupt audio ({_describe(error)})") from error


def _require_frames(path: str | Path, frames: int) -> None:
    if frames <= 0:
        raise AudioError(path, "no audio frames", "empty")


def _require_finite(path: str | Path, non_finite: int, total: int) -> None:
    if non_finite:
        problem = f"{non_finite} of {total} samples are not finite (NaN or ±inf)"
        raise AudioError(path, problem, "non_finite")


def _count_non_finite(samples: np.ndarray) -> int:
    return int(samples.size - np.count_nonzero(np.isfinite(samples)))


def _has_signal(block: np.ndarray) -> bool:
    """Whether any sample reaches the silence threshold. Written as "not all below" because
    every comparison with NaN is False: ``max(abs(block)) >= peak`` would call a block that
    holds a NaN silent, this never does."""
    return not bool(np.all(np.abs(block) < SILENCE_PEAK))


def _blocks(handle: sf.SoundFile) -> Iterator[np.ndarray]:
    handle.seek(0)
    return handle.blocks(blocksize=_SCAN_BLOCK, dtype="float32", always_2d=True)


def _last_frame_decodes(handle: sf.SoundFile) -> bool:
    """A FLAC cut short keeps a header promising every frame; its end does not decode."""
    try:
        handle.seek(handle.frames - 1)
        return len(handle.read(1, dtype="float32")) == 1
    except (sf.LibsndfileError, RuntimeError):
        return False


def _scan_to_end(path: str | Path, handle: sf.SoundFile) -> bool:
    """Decode every block: raise on non-finite samples, else say whether the file is silent."""
    non_finite, signal = 0, False
    for block in _blocks(handle):
        non_finite += _count_non_finite(block)
        signal = signal or _has_signal(block)
    _require_finite(path, non_finite, handle.frames * handle.channels)
    return not signal


def _scan(path: str | Path, handle: sf.SoundFile, check_silence: bool) -> bool | None:
    """The silence verdict (None when not asked for); float files are always read to the end,
    integer files only when silence is asked for, and then only up to the first signal."""
    if handle.subtype in FLOAT_SUBTYPES:
        silent = _scan_to_end(path, handle)
        return silent if check_silence else None
    if check_silence:
        return not any(_has_signal(block) for block in _blocks(handle))
    return None


def probe(path: str | Path, check_silence: bool = False) -> AudioInfo:
    """Read the header of ``path`` and check that its last frame decodes; with
    ``check_silence``, also decide whether it is silent.

    Float files (`FLOAT_SUBTYPES`) are decoded to the end whether or not silence is asked
    for, and rejected when any sample is NaN or ±inf. Raises `AudioError` for missing, empty
    (no bytes or no frames), unreadable (corrupt, truncated) and non-finite files.
    """
    with _open(path) as handle:
        _require_frames(path, handle.frames)
        if handle.format in _COUNT_FROM_HEADER and not _last_frame_decodes(handle):
            problem = f"truncated or corrupt: the header promises {handle.frames} frames"
            raise AudioError(path, f"{problem} but the last one does not decode")
        try:
            silent = _scan(path, handle, check_silence)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioError(path, f"decoding failed ({_describe(error)})") from error
        return AudioInfo(handle.samplerate, handle.channels, handle.frames, silent)


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    *,
    start: float = 0.0,
    end: float | None = None,
) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate``, shape ``(T,)``.

    ``start``/``end`` (seconds; ``end=None`` is the end of the file) decode only that segment
    of a longer recording, seeking to it rather than decoding what comes before. Channels are
    averaged; other rates are resampled with soxr. Raises `AudioError` naming the file and
    the problem: missing, empty (no frames, a segment that starts past the end, or too short
    to give one sample at ``sample_rate``), unreadable, or non-finite (checked before
    resampling, which would smear one NaN over its neighbours).
    """
    with _open(path) as handle:
        try:
            data = _read_segment(handle, start, end)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioError(path, f"decoding failed ({_describe(error)})") from error
        source_rate = handle.samplerate
    _require_frames(path, data.shape[0])
    _require_finite(path, _count_non_finite(data), data.size)
    samples = to_mono_16k(data, source_rate, sample_rate)
    if samples.size == 0:
        _refuse_too_short(path, data.shape[0], source_rate, sample_rate)
    return samples


def _refuse_too_short(path: str | Path, frames: int, source_rate: int, sample_rate: int) -> None:
    counted = f"{frames} frame{'' if frames == 1 else 's'}"
    problem = f"too short: {counted} at {source_rate} Hz give no sample at {sample_rate} Hz"
    raise AudioError(path, problem, "empty")


def stream_audio(
    path: str | Path, sample_rate: int = SAMPLE_RATE, *, block_frames: int = _STREAM_BLOCK
) -> Iterator[np.ndarray]:
    """Decode ``path`` block by block as mono float32 at ``sample_rate``: `load_audio`'s
    samples, without the whole recording in memory.

    Each block is down-mixed and passed through one soxr stream, which gives the samples a
    one-shot resampling gives. The checks are `load_audio`'s, with its messages; since they
    count the whole file, non-finite samples and a file too short for one output sample are
    raised as `AudioError` once the last block is read, so a caller that must not act on a
    bad file consumes the stream before it acts.
    """
    with _open(path) as handle:
        _require_frames(path, handle.frames)
        source_rate, channels = handle.samplerate, handle.channels
        resampler = None
        if source_rate != sample_rate:
            resampler = soxr.ResampleStream(source_rate, sample_rate, 1, "float32", "HQ")
        non_finite = frames = produced = 0
        try:
            for block in handle.blocks(blocksize=block_frames, dtype="float32", always_2d=True):
                non_finite += _count_non_finite(block)
                frames += len(block)
                mono = np.ascontiguousarray(block.mean(axis=1), dtype=np.float32)
                samples = mono if resampler is None else resampler.resample_chunk(mono)
                produced += len(samples)
                if len(samples):
                    yield samples
            if resampler is not None:
                tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
                produced += len(tail)
                if len(tail):
                    yield tail
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioError(path, f"decoding failed ({_describe(error)})") from error
    _require_frames(path, frames)
    _require_finite(path, non_finite, frames * channels)
    if produced == 0:
        _refuse_too_short(path, frames, source_rate, sample_rate)


def _read_segment(handle: sf.SoundFile, start: float, end: float | None) -> np.ndarray:
    """Frames ``[start, end)`` (seconds) of an open file as ``(T, C)`` float32."""
    first = round(start * handle.samplerate)
    last = handle.frames if end is None else min(handle.frames, round(end * handle.samplerate))
    if first >= last:
        return np.zeros((0, handle.channels), dtype=np.float32)
    if first:
        handle.seek(first)
    return handle.read(last - first, dtype="float32", always_2d=True)


def to_mono_16k(data: np.ndarray, source_rate: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Down-mix ``(T, C)`` or ``(T,)`` samples to mono and resample to ``sample_rate``."""
    mono = data.mean(axis=1) if data.ndim == 2 else data
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate, quality="HQ").astype(np.float32)
    return mono
