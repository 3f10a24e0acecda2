"""A persistent on-disk store of frozen backbones' hidden states, shared by folds, runs and
processes.

With a frozen backbone every fold of a cross-validation encodes the same utterances again, and so
does every run of a grid over head settings or seeds. The store keeps each clip's states in its
own safetensors file, named by a digest of

* the backbone fingerprint (a digest of its weights, front-end settings and precision),
* the audio's content (a digest of the file's bytes and the segment's start and end), and
* the crop (the samples kept, or none for the whole clip),

so a renamed or copied corpus still hits, an edited file misses, and states of another backbone,
front end or crop can never be served. Files are grouped in one folder per fingerprint (what
``peft-ser cache`` lists and clears).

Writes go to a temporary file in the entry's folder and are renamed into place
(`peft_ser.utils.fileio`), so concurrent writers of the same entry each leave a whole file (the last
rename wins; both hold the same states) and an interrupted write leaves no entry. Each entry
carries a checksum of its name, shape and bytes in its metadata: an entry that cannot be read
back, or whose states are not the float16 ``[L+1, F, D]`` it was written with (truncated,
overwritten with other numbers, copied from another entry), is named in a warning, deleted and
treated as a miss, so the clip is encoded again.

A size budget bounds the store: after a run's writes, the least recently used entries (by
modification time, refreshed on every hit) are deleted until the store fits.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import write_atomic

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ENV_VAR = "PEFT_SER_FEATURE_CACHE"
"""Overrides the store's location (default ``~/.cache/peft-ser/features``)."""
DEFAULT_BUDGET_GB = 20.0
SUFFIX = ".safetensors"
_CHUNK = 1 << 20
DTYPE = "float16"
"""The states' torch dtype, by name: torch is imported where tensors are read or written, so
``peft-ser cache`` (which only lists and deletes files) and its ``--help`` do not load it."""


class FeatureStoreError(UserError):
    """The feature store's folder cannot be used (not a folder, not writable)."""


def default_root() -> Path:
    """``$PEFT_SER_FEATURE_CACHE``, else ``~/.cache/peft-ser/features``."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured).expanduser()
    return Path("~/.cache/peft-ser/features").expanduser()


_content_digests: dict[tuple[str, int, int, float, float | None], str] = {}


def content_digest(
    path: str | os.PathLike[str], start: float = 0.0, end: float | None = None
) -> str:
    """A digest of the audio file's bytes and the segment, remembered per (path, size, mtime)
    within the process so that folds after the first do not read the files again."""
    status = os.stat(path)
    token = (os.path.abspath(path), status.st_size, status.st_mtime_ns, start, end)
    known = _content_digests.get(token)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    digest.update(f"\0{start!r}\0{end!r}".encode())
    _content_digests[token] = digest.hexdigest()
    return _content_digests[token]


@dataclass(frozen=True)
class StoreUsage:
    """Entries and bytes of one backbone fingerprint's folder."""

    fingerprint: str
    entries: int
    nbytes: int


class FeatureStore:
    """Hidden states ``[L+1, F, D]`` (float16) on disk, one file per clip and crop."""

    def __init__(self, root: str | os.PathLike[str] | None = None, budget_gb: float | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.budget_bytes = round((DEFAULT_BUDGET_GB if budget_gb is None else budget_gb) * 1e9)
        if self.root.exists() and not self.root.is_dir():
            raise FeatureStoreError(f"{self.root}: the feature cache location is not a folder")

    def entry(self, fingerprint: str, content: str, crop: int | None) -> Path:
        """Where the states of ``content`` (cropped to ``crop`` samples) under ``fingerprint``
        live, whether or not they exist yet."""
        digest = hashlib.sha256(f"{fingerprint}\0{content}\0{crop}".encode()).hexdigest()
        return self.root / fingerprint[:16] / digest[:2] / f"{digest}{SUFFIX}"

    def load(self, path: Path) -> torch.Tensor | None:
        """The stored states, or None when absent; a damaged entry is deleted (a miss)."""
        try:
            states, problem = _read_entry(path)
        except FileNotFoundError:
            return None
        if states is None:
            if problem:
                log.warning("feature cache: %s is damaged (%s); encoding it again", path, problem)
            else:  # written by an earlier version, without a checksum
                log.info("feature cache: %s has no checksum; encoding it again", path)
            with contextlib.suppress(OSError):  # a read-only store keeps it; it is never used
                path.unlink(missing_ok=True)
            return None
        with contextlib.suppress(OSError):  # least recently used goes first over the budget
            os.utime(path)
        return states

    def save(self, path: Path, states: torch.Tensor) -> None:
        """Store ``states`` (as float16) with their checksum; an `OSError` of the disk passes on
        (a full or read-only store is the caller's to work around)."""
        import torch
        from safetensors.torch import save as serialize

        tensor = states.detach().to("cpu", getattr(torch, DTYPE)).contiguous()
        payload = serialize({"states": tensor}, metadata={"checksum": checksum(path.name, tensor)})
        write_atomic(path, payload)

    def entries(self) -> list[Path]:
        return sorted(self.root.glob(f"*/*/*{SUFFIX}")) if self.root.is_dir() else []

    def usage(self) -> list[StoreUsage]:
        """Entries and bytes per fingerprint folder, largest first."""
        totals: dict[str, tuple[int, int]] = {}
        for path in self.entries():
            count, size = totals.get(path.parent.parent.name, (0, 0))
            totals[path.parent.parent.name] = (count + 1, size + _size(path))
        rows = [StoreUsage(name, count, size) for name, (count, size) in totals.items()]
        return sorted(rows, key=lambda row: -row.nbytes)

    def enforce_budget(self) -> int:
        """Delete the least recently used entries until the store fits its budget; returns
        how many were deleted."""
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
            log.info("feature cache: %d least recently used entries removed (budget)", removed)
        return removed

    def clear(self, fingerprint: str | None = None) -> int:
        """Delete every entry (or those of fingerprints starting with ``fingerprint``); returns
        the bytes freed."""
        if not self.root.is_dir():
            return 0
        freed = 0
        for folder in self.root.iterdir():
            if folder.is_dir() and (fingerprint is None or folder.name.startswith(fingerprint)):
                freed += sum(_size(path) for path in folder.rglob("*") if path.is_file())
                shutil.rmtree(folder, ignore_errors=True)
        return freed


def _read_entry(path: Path) -> tuple[torch.Tensor | None, str]:
    """An entry's states, or None and what is wrong with them (empty: no checksum)."""
    import torch
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, "pt") as handle:  # type: ignore[no-untyped-call]
            metadata = handle.metadata() or {}
            states = handle.get_tensor("states")
    except FileNotFoundError:
        raise
    except (SafetensorError, OSError, KeyError) as error:
        return None, f"unreadable: {error}"
    if states.dtype != getattr(torch, DTYPE) or states.dim() != 3:
        return None, f"{states.dtype} {tuple(states.shape)}, not torch.{DTYPE} [L+1, F, D]"
    if "checksum" not in metadata:
        return None, ""
    if metadata["checksum"] != checksum(path.name, states):
        return None, "its checksum does not match its states"
    return states, ""


def checksum(name: str, states: torch.Tensor) -> str:
    """A digest of an entry's file name, its states' dtype and shape, and their bytes: another
    entry's file, or other numbers of any shape, do not match it."""
    import torch

    digest = hashlib.blake2b(f"{name}\0{states.dtype}\0{tuple(states.shape)}".encode())
    digest.update(states.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


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
