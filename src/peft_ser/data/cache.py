"""One cache for what is costly to compute and cheap to keep: memory first, then disk.

Two things are kept this way: decoded, resampled audio (`peft_ser.data.audio_cache`) and frozen
backbones' hidden states (`peft_ser.data.feature_store`, `peft_ser.data.states`). Each is a thin
user that says what its entries are named by and how a value is written and checked (a `Codec`);
the rules are here, once:

* Memory first (`MemoryFirst`): values by key, within a byte budget.
* Then disk (`DiskCache`): one file per entry, named by a digest of what the value depends on,
  in folders named by the digest's first two characters (below one folder per group where the
  user has groups, e.g. one per backbone fingerprint).
* Writes go to a temporary file in the entry's folder and are renamed into place
  (`peft_ser.utils.fileio.write_atomic`): concurrent writers of one entry (data-loading
  workers, processes, runs) each leave a whole file, the last rename wins and both hold the same
  value, and an interrupted write leaves no entry. Readers see a whole file or none, so no lock
  is needed.
* An entry that cannot be read back as what was written (truncated, overwritten, another
  entry's file) is named in a warning, deleted and treated as a miss: the value is computed
  again, never served wrong. An entry in an earlier version's format is a quiet miss.
* A size budget bounds the disk: `DiskCache.enforce_budget` deletes the least recently used
  entries (by modification time, refreshed on every hit) until it fits.
* The disk is a cache: when it refuses a write (a full disk, a read-only folder), `MemoryFirst`
  goes on without it after one warning; the run loses time, never results.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from peft_ser.utils.errors import environment_problem
from peft_ser.utils.fileio import write_atomic

log = logging.getLogger(__name__)

V = TypeVar("V")
K = TypeVar("K", bound=Hashable)
D = TypeVar("D", bound="DiskCache[Any]")


class Unusable(Exception):
    """An entry's file holds no usable value: ``problem`` says why. ``stale`` marks an entry
    written by an earlier version (a quiet miss, not damage)."""

    def __init__(self, problem: str, stale: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.stale = stale


class Codec(Protocol[V]):
    """How one kind of value is stored in an entry's file."""

    suffix: str

    def dump(self, name: str, value: V) -> bytes:
        """The file's bytes; ``name`` is the entry's file name, for a checksum to bind."""

    def read(self, path: Path) -> V:
        """The value; `FileNotFoundError` when absent, `Unusable` when it is not the value."""

    def size(self, value: V) -> int:
        """Bytes the value takes in memory."""


@dataclass(frozen=True)
class Usage:
    """Entries and bytes of one group's folder (the whole cache when it has no groups)."""

    group: str
    entries: int
    nbytes: int


class DiskCache(Generic[V]):
    """Values on disk, one file per entry, under ``root``.

    ``what`` names the cache in log lines (``feature cache``), ``redo`` says what a miss costs
    (``encoding it again``). ``budget_bytes`` of None leaves the folder unbounded.
    """

    def __init__(
        self,
        root: Path,
        codec: Codec[V],
        *,
        what: str,
        redo: str,
        budget_bytes: int | None = None,
        grouped: bool = False,
    ) -> None:
        self.root = root
        self.codec = codec
        self.what = what
        self.redo = redo
        self.budget_bytes = budget_bytes
        self.grouped = grouped

    def path(self, digest: str, group: str = "") -> Path:
        """The file of the entry named ``digest`` (in ``group``), whether or not it exists."""
        folder = self.root / group if self.grouped else self.root
        return folder / digest[:2] / f"{digest}{self.codec.suffix}"

    def load(self, path: Path) -> V | None:
        """The stored value, or None when absent; an unusable entry is deleted (a miss)."""
        try:
            value = self.codec.read(path)
        except FileNotFoundError:
            return None
        except Unusable as unusable:
            if unusable.stale:
                log.info("%s: %s %s; %s", self.what, path, unusable.problem, self.redo)
            else:
                log.warning(
                    "%s: %s is damaged (%s); %s", self.what, path, unusable.problem, self.redo
                )
            with contextlib.suppress(OSError):  # a read-only cache keeps it; it is never used
                path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):  # least recently used goes first over the budget
            os.utime(path)
        return value

    def save(self, path: Path, value: V) -> None:
        """Store ``value`` whole; an `OSError` of the disk passes on (a full or read-only cache
        is the caller's to work around)."""
        write_atomic(path, self.codec.dump(path.name, value))

    def entries(self) -> list[Path]:
        levels = "*/*/*" if self.grouped else "*/*"
        return sorted(self.root.glob(f"{levels}{self.codec.suffix}")) if self.root.is_dir() else []

    def usage(self) -> list[Usage]:
        """Entries and bytes per group, largest first."""
        totals: dict[str, tuple[int, int]] = {}
        for path in self.entries():
            group = path.parent.parent.name if self.grouped else ""
            count, size = totals.get(group, (0, 0))
            totals[group] = (count + 1, size + _size(path))
        rows = [Usage(group, count, size) for group, (count, size) in totals.items()]
        return sorted(rows, key=lambda row: -row.nbytes)

    def enforce_budget(self) -> int:
        """Delete the least recently used entries until the cache fits its budget; returns
        how many were deleted."""
        if self.budget_bytes is None:
            return 0
        sized = [(path, _size(path), _mtime(path)) for path in self.entries()]
        total = sum(size for _, size, _ in sized)
        removed = 0
        for path, size, _ in sorted(sized, key=lambda item: item[2]):
            if total <= self.budget_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
            removed += 1
        if removed:
            log.info("%s: %d least recently used entries removed (budget)", self.what, removed)
        return removed

    def clear(self, prefix: str | None = None) -> int:
        """Delete every entry (or those in folders whose name starts with ``prefix``: a group);
        returns the bytes freed."""
        if not self.root.is_dir():
            return 0
        freed = 0
        for folder in self.root.iterdir():
            if folder.is_dir() and (prefix is None or folder.name.startswith(prefix)):
                freed += sum(_size(path) for path in folder.rglob("*") if path.is_file())
                shutil.rmtree(folder, ignore_errors=True)
        return freed


class MemoryFirst(Generic[K, V, D]):
    """Values by key in memory within ``budget_bytes``, with a `DiskCache` behind them.

    The caller names each value's disk entry (`recall`, `write`): memory keys are what a run
    asks for (an utterance, a file), disk entries what a value depends on (a file's content,
    a backbone), so one entry serves many runs.
    """

    def __init__(
        self, size: Callable[[V], int], disk: D | None = None, budget_bytes: float = math.inf
    ) -> None:
        self.size = size
        self.disk = disk
        self.budget_bytes = budget_bytes
        self.nbytes = 0
        self._values: dict[K, V] = {}

    def __contains__(self, key: K) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, key: K) -> V:
        return self._values[key]

    def get(self, key: K) -> V | None:
        return self._values.get(key)

    def keep(self, key: K, value: V) -> bool:
        """Keep ``value`` in memory if it fits the budget; whether it was kept."""
        previous = self._values.get(key)
        freed = 0 if previous is None else self.size(previous)
        needed = self.size(value)
        if self.nbytes - freed + needed > self.budget_bytes:
            return False
        self._values[key] = value
        self.nbytes += needed - freed
        return True

    def recall(self, key: K, entry: Path, keep: bool = True) -> V | None:
        """The value from memory, else from the disk ``entry`` (then kept in memory when it
        fits and ``keep``), else None."""
        value = self._values.get(key)
        if value is None and self.disk is not None:
            value = self.disk.load(entry)
            if value is not None and keep:
                self.keep(key, value)
        return value

    def write(self, entry: Path, value: V) -> None:
        """Store ``value`` on disk as ``entry``; a refused write drops the disk (`without_disk`)."""
        if self.disk is None:
            return
        try:
            self.disk.save(entry, value)
        except OSError as error:
            self.without_disk(error)

    def without_disk(self, error: OSError) -> None:
        """Go on in memory alone after the disk refused a write (a full disk, a read-only
        folder): it is a cache, so the run loses time, never results; one warning says so."""
        assert self.disk is not None
        log.warning(
            "%s: cannot write to %s (%s); this run goes on without the persistent cache",
            self.disk.what, self.disk.root, environment_problem(error) or error,
        )  # fmt: skip
        self.disk = None

    def clear(self) -> None:
        self._values.clear()
        self.nbytes = 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # removed by another process meanwhile
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
