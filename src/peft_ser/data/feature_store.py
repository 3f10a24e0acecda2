"""A persistent on-disk store of frozen backbones' hidden states, shared by folds, runs and
processes.

With a frozen backbone every fold of a cross-validation encodes the same utterances again, and so
does every run of a grid over head settings or seeds; with ``model.tune_layers``, so do the
layers below the tuned ones. The store keeps each clip's states in its own safetensors file,
named by a digest of

* the backbone fingerprint (a digest of its weights, front-end settings and precision; under
  ``model.tune_layers``, of the weights below the first tuned layer ``k`` and of ``k``),
* the audio's content (a digest of the file's bytes and the segment's start and end), and
* the crop (the samples kept, or none for the whole clip),

so a renamed or copied corpus still hits, an edited file misses, and states of another backbone,
front end or crop can never be served. Files are grouped in one folder per fingerprint (what
``peft-ser cache`` lists and clears).

The store is a `peft_ser.data.cache.DiskCache`: atomic writes that concurrent writers share, a
damaged entry deleted and treated as a miss, a size budget over the least recently used. Each
entry carries a checksum of its name, dtype, shape and bytes in its metadata, so states that are
not the ``[L+1, F, D]`` of the store's dtype an entry was written with (truncated, overwritten
with other numbers or another dtype, copied from another entry) are a miss and the clip is
encoded again; an entry without a checksum (written by an earlier version) is a quiet miss.

A frozen backbone's states are stored in float16 (the head alone reads them, and half the bytes
count); the states below tuned layers in float32 (`EXACT_DTYPE`), which the layers above then
read exactly as the uncached forward hands them on.
"""

from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from peft_ser.data.cache import DiskCache, Unusable
from peft_ser.utils.errors import UserError

if TYPE_CHECKING:
    import torch

ENV_VAR = "PEFT_SER_FEATURE_CACHE"
"""Overrides the store's location (default ``~/.cache/peft-ser/features``)."""
DEFAULT_BUDGET_GB = 20.0
_CHUNK = 1 << 20
DTYPE = "float16"
"""The frozen backbone's states' torch dtype, by name: torch is imported where tensors are read
or written, so ``peft-ser cache`` (which only lists and deletes files) and its ``--help`` do not
load it."""
EXACT_DTYPE = "float32"
"""The dtype of the states below tuned layers (``model.tune_layers``)."""


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


class StatesCodec:
    """Hidden states as a safetensors file: ``[L+1, F, D]`` of ``dtype`` (a torch dtype's name)
    with their checksum; states of another dtype are not this codec's entry."""

    suffix = ".safetensors"

    def __init__(self, dtype: str = DTYPE) -> None:
        self.dtype = dtype

    def dump(self, name: str, value: torch.Tensor) -> bytes:
        import torch
        from safetensors.torch import save as serialize

        tensor = value.detach().to("cpu", getattr(torch, self.dtype)).contiguous()
        return serialize({"states": tensor}, metadata={"checksum": checksum(name, tensor)})

    def read(self, path: Path) -> torch.Tensor:
        import torch
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(path, "pt") as handle:  # type: ignore[no-untyped-call]
                metadata = handle.metadata() or {}
                states = handle.get_tensor("states")
        except FileNotFoundError:
            raise
        except (SafetensorError, OSError, KeyError) as error:
            raise Unusable(f"unreadable: {error}") from error
        if states.dtype != getattr(torch, self.dtype) or states.dim() != 3:
            raise Unusable(
                f"{states.dtype} {tuple(states.shape)}, not torch.{self.dtype} [L+1, F, D]"
            )
        if "checksum" not in metadata:
            raise Unusable("has no checksum", stale=True)
        if metadata["checksum"] != checksum(path.name, states):
            raise Unusable("its checksum does not match its states")
        return states

    def size(self, value: torch.Tensor) -> int:
        return value.numel() * value.element_size()


STATES = StatesCodec()


class FeatureStore(DiskCache["torch.Tensor"]):
    """Hidden states ``[L+1, F, D]`` (of ``dtype``: float16 unless told) on disk, one file per
    clip and crop, in one folder per backbone fingerprint."""

    budget_bytes: int
    codec: StatesCodec

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        budget_gb: float | None = None,
        dtype: str = DTYPE,
    ) -> None:
        folder = Path(root).expanduser() if root is not None else default_root()
        if folder.exists() and not folder.is_dir():
            raise FeatureStoreError(f"{folder}: the feature cache location is not a folder")
        budget = round((DEFAULT_BUDGET_GB if budget_gb is None else budget_gb) * 1e9)
        super().__init__(
            folder, StatesCodec(dtype), what="feature cache", redo="encoding it again",
            budget_bytes=budget, grouped=True,
        )  # fmt: skip

    @property
    def dtype(self) -> str:
        return self.codec.dtype

    def holding(self, dtype: str) -> FeatureStore:
        """This store (its folder and budget) for states of ``dtype``."""
        if dtype == self.dtype:
            return self
        other = copy.copy(self)
        other.codec = StatesCodec(dtype)
        return other

    def entry(self, fingerprint: str, content: str, crop: int | None) -> Path:
        """Where the states of ``content`` (cropped to ``crop`` samples) under ``fingerprint``
        live, whether or not they exist yet."""
        digest = hashlib.sha256(f"{fingerprint}\0{content}\0{crop}".encode()).hexdigest()
        return self.path(digest, fingerprint[:16])


def checksum(name: str, states: torch.Tensor) -> str:
    """A digest of an entry's file name, its states' dtype and shape, and their bytes: another
    entry's file, or other numbers of any shape, do not match it."""
    import torch

    digest = hashlib.blake2b(f"{name}\0{states.dtype}\0{tuple(states.shape)}".encode())
    digest.update(states.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
