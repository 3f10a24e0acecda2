"""Decoded audio kept for reuse: on disk (`AudioCache`) and for one run (`RunAudio`).

Decoding and resampling a clip costs far more than reading its samples back (a 48-kHz stereo
file: about 20 times more, `bench/bench_audio_cache.py`), and a run reads every clip once per
epoch and fold. Both are users of the one cache mechanism of `peft_ser.data.cache`.

`peft-ser preprocess` fills a prepared corpus's `PREPARED_FOLDER` with every utterance; a run
over that corpus reads it, so its first epoch decodes nothing (`RunAudio`). An entry is named
by the source's absolute path, size, modification time and target rate (and the segment), so a
source that was edited or replaced is a miss, decoded again, and never served stale.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
from pathlib import Path

import numpy as np

from peft_ser.data.audio import SAMPLE_RATE, file_status, load_audio
from peft_ser.data.cache import DiskCache, MemoryFirst, Unusable

PREPARED_FOLDER = "audio_cache"
"""The folder of a prepared corpus that `peft-ser preprocess` fills and training reads."""


def preprocessed(prepared_dir: Path | None) -> Path | None:
    """The decoded-audio cache `peft-ser preprocess` made in a prepared corpus folder, if any."""
    folder = None if prepared_dir is None else prepared_dir / PREPARED_FOLDER
    return folder if folder is not None and folder.is_dir() else None


class SamplesCodec:
    """Mono float32 samples as a ``.npy`` file."""

    suffix = ".npy"

    def dump(self, name: str, value: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        np.save(buffer, value)
        return buffer.getvalue()

    def read(self, path: Path) -> np.ndarray:
        try:
            samples = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, EOFError) as error:
            raise Unusable(f"unreadable: {error}") from error
        if samples.dtype != np.float32 or samples.ndim != 1 or samples.size == 0:
            raise Unusable(f"{samples.dtype} {samples.shape}, not float32 samples")
        return samples

    def size(self, value: np.ndarray) -> int:
        return int(value.nbytes)


SAMPLES = SamplesCodec()


class AudioCache(DiskCache[np.ndarray]):
    """Decoded, mono, resampled audio as ``.npy`` files under one folder (no budget: it holds
    what it is given, one corpus's clips)."""

    def __init__(self, directory: str | Path, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__(Path(directory), SAMPLES, what="audio cache", redo="decoding it again")
        self.sample_rate = sample_rate

    def entry(self, source: str | Path, start: float = 0.0, end: float | None = None) -> Path:
        """Where the cached samples of ``source`` (or of its segment ``start``–``end``) live,
        whether or not they exist yet; `AudioError` when the source is missing."""
        absolute = os.path.abspath(source)
        status = file_status(source)
        token = f"{absolute}\0{status.st_size}\0{status.st_mtime_ns}\0{self.sample_rate}"
        if start != 0.0 or end is not None:
            token += f"\0{start!r}\0{end!r}"
        return self.path(hashlib.sha256(token.encode("utf-8")).hexdigest())

    def ensure(self, source: str | Path, start: float = 0.0, end: float | None = None) -> bool:
        """Make sure ``source`` (or its segment) is cached; True when it had to be decoded. A
        refused write passes on as `OSError`."""
        entry = self.entry(source, start, end)
        if entry.exists():
            return False
        self.save(entry, load_audio(source, self.sample_rate, start=start, end=end))
        return True


class RunAudio:
    """The decoded 16-kHz clips of one run, so that no epoch (and no fold) decodes a file twice.

    Clips are kept in memory up to ``budget_bytes``. Behind memory is an `AudioCache` in
    ``folder``: read before decoding (a preprocessed corpus's cache is read whole this way),
    and written beyond the budget and in data-loading worker processes (whose memory is gone
    after each epoch). Callers must not change a returned array in place: it is the cached copy.
    """

    def __init__(self, budget_bytes: int, folder: str | Path | None = None) -> None:
        disk = AudioCache(folder) if folder is not None else None
        self._clips = MemoryFirst[tuple[str, float, float | None], np.ndarray, AudioCache](
            SAMPLES.size, disk, budget_bytes
        )

    @property
    def nbytes(self) -> int:
        """Bytes of the clips kept in memory."""
        return self._clips.nbytes

    def load(self, path: str | Path, start: float = 0.0, end: float | None = None) -> np.ndarray:
        """The clip's 16-kHz mono samples, decoded only when no cache holds them."""
        key = (str(path), start, end)
        clip = self._clips.get(key)
        if clip is not None:
            return clip
        in_worker = multiprocessing.parent_process() is not None  # a data-loading worker
        disk = self._clips.disk
        entry = disk.entry(path, start, end) if disk is not None else None
        if entry is not None:
            clip = self._clips.recall(key, entry, keep=not in_worker)
            if clip is not None:
                return clip
        clip = load_audio(path, start=start, end=end)
        if (in_worker or not self._clips.keep(key, clip)) and entry is not None:
            self._clips.write(entry, clip)
        return clip
