"""Audio input: header probing, decoding, down-mixing, resampling and a cache of the result.

Decoding goes through libsndfile (soundfile), so wav, flac and ogg always work and mp3 works
where the installed libsndfile supports it. Every model in the project expects 16 kHz mono
float32, so `load_audio` always down-mixes and resamples (soxr, high quality): corpora such
as MSP-Podcast contain stray stereo 44.1 kHz files, and RAVDESS is 48 kHz throughout.

Corpus preparation must stay fast on hundreds of thousands of files, so `probe` reads only
the header, and optionally scans for silence block by block, stopping at the first block
with signal: speech files cost one block, only truly silent files are decoded fully.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from peft_ser.fileio import write_atomic

SAMPLE_RATE = 16000
SILENCE_PEAK = 10 ** (-60 / 20)
"""A file whose absolute peak stays below -60 dBFS holds no usable signal."""
_SCAN_BLOCK = 8192


class AudioError(Exception):
    """A file that cannot be used as audio; the message names the file and the problem.

    ``kind`` is ``missing``, ``empty`` (no bytes or no frames) or ``unreadable``, so callers
    can count problems by cause without parsing messages.
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


def _open(path: str | Path) -> sf.SoundFile:
    try:
        size = os.stat(path).st_size
    except FileNotFoundError as error:
        raise AudioError(path, "file does not exist", "missing") from error
    if size == 0:
        raise AudioError(path, "file is empty (0 bytes)", "empty")
    try:
        return sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise AudioError(path, f"unreadable or corrupt audio ({error})") from error


def probe(path: str | Path, check_silence: bool = False) -> AudioInfo:
    """Read the header of ``path``; with ``check_silence``, also decide whether it is silent.

    Raises `AudioError` for missing, empty (no bytes or no frames) and unreadable files.
    """
    with _open(path) as handle:
        info = AudioInfo(handle.samplerate, handle.channels, handle.frames)
        if info.frames <= 0:
            raise AudioError(path, "no audio frames", "empty")
        if not check_silence:
            return info
        try:
            silent = _is_silent(handle)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioError(path, f"decoding failed ({error})") from error
    return AudioInfo(info.sample_rate, info.channels, info.frames, silent)


def _is_silent(handle: sf.SoundFile) -> bool:
    for block in handle.blocks(blocksize=_SCAN_BLOCK, dtype="float32", always_2d=True):
        if block.size and float(np.max(np.abs(block))) >= SILENCE_PEAK:
            return False
    return True


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode ``path`` to mono float32 at ``sample_rate``, shape ``(T,)``.

    Channels are averaged; other rates are resampled with soxr. Raises `AudioError` naming the
    file and the problem (missing, empty, unreadable, no frames).
    """
    with _open(path) as handle:
        try:
            data = handle.read(dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise AudioError(path, f"decoding failed ({error})") from error
        source_rate = handle.samplerate
    if data.shape[0] == 0:
        raise AudioError(path, "no audio frames", "empty")
    return to_mono_16k(data, source_rate, sample_rate)


def to_mono_16k(data: np.ndarray, source_rate: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Down-mix ``(T, C)`` or ``(T,)`` samples to mono and resample to ``sample_rate``."""
    mono = data.mean(axis=1) if data.ndim == 2 else data
    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if source_rate != sample_rate:
        mono = soxr.resample(mono, source_rate, sample_rate, quality="HQ").astype(np.float32)
    return mono


class AudioCache:
    """Decoded, mono, resampled audio stored as ``.npy`` files under one directory.

    An entry's name hashes the source's absolute path, size, modification time and the
    target rate, so editing or replacing a source file (or asking for another rate) makes a
    new entry instead of serving stale samples. Entries are written atomically, so parallel
    workers or an interrupted run never leave a truncated file behind.
    """

    def __init__(self, directory: str | Path, sample_rate: int = SAMPLE_RATE) -> None:
        self.directory = Path(directory)
        self.sample_rate = sample_rate

    def entry(self, source: str | Path) -> Path:
        """Where the cached samples of ``source`` live (whether or not they exist yet)."""
        absolute = os.path.abspath(source)
        try:
            stat = os.stat(absolute)
        except OSError as error:
            raise AudioError(source, f"cannot stat ({error.strerror})", "missing") from error
        token = f"{absolute}\0{stat.st_size}\0{stat.st_mtime_ns}\0{self.sample_rate}"
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        return self.directory / digest[:2] / f"{digest}.npy"

    def ensure(self, source: str | Path) -> bool:
        """Make sure ``source`` is cached; returns True when it had to be (re)computed."""
        entry = self.entry(source)
        if entry.exists():
            return False
        self._store(entry, load_audio(source, self.sample_rate))
        return True

    def load(self, source: str | Path) -> np.ndarray:
        """The samples of ``source``, from the cache when fresh, else decoded and stored."""
        entry = self.entry(source)
        if entry.exists():
            return np.load(entry)
        samples = load_audio(source, self.sample_rate)
        self._store(entry, samples)
        return samples

    @staticmethod
    def _store(entry: Path, samples: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, samples)
        write_atomic(entry, buffer.getvalue())
