"""Where released files live, how they are fetched and checked, and their converted copies.

Two layouts are read, so a folder filled by either package works offline:

* peft-ser's: ``<folder>/zoo/<name>/<published file name>`` (where downloads go);
* the original PEFT-SER package's: ``<folder>/<name>.pt`` and ``<folder>/<name>_lora.pt``.

The authors' files are pickles. Each is read once, with ``torch.load(weights_only=True)``, when
it is converted; the converted weights are kept beside it as ``<name>.safetensors``, with the
size, modification time and sha256 of the files they came from, and later loads read only that.
A local pin file ``<name>.sha256`` (written by ``peft-ser zoo pin NAME``) and any hash pinned in
the zoo table are enforced whenever a file is converted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from peft_ser.utils.fileio import write_atomic, write_atomic_with
from peft_ser.zoo.table import ZooEntry, ZooError, ZooFile, zoo_entry

if TYPE_CHECKING:
    import torch

logger = logging.getLogger("peft_ser.zoo")

CACHE_ENV = "PEFT_SER_CACHE"
DEFAULT_CACHE = Path("~/.cache/peft-ser")
DOWNLOAD_TIMEOUT_S = 60
CONVERTED_FORMAT = "peft-ser-zoo-converted-1"
_CHUNK = 1 << 20
_warned: set[Path] = set()


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """Where released files live: ``cache_dir``, else $PEFT_SER_CACHE, else ~/.cache/peft-ser."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(chosen).expanduser()


def search_folders(cache_dir: str | Path | None = None) -> list[Path]:
    """The folders searched for a model's files: ``cache_dir`` alone when given; else the
    peft-ser cache, then the working directory (the original package's default cache)."""
    if cache_dir:
        return [cache_root(cache_dir)]
    folders = [cache_root(), Path.cwd()]
    return [folder for index, folder in enumerate(folders) if folder not in folders[:index]]


def cached_path(name: str, file: ZooFile, cache_dir: str | Path | None = None) -> Path:
    """The exact path a released file is downloaded to (place it there by hand when offline)."""
    return cache_root(cache_dir) / "zoo" / name / file.filename


@dataclass(frozen=True)
class CachedModel:
    """One layout's files of a released model in one folder (some may not exist)."""

    name: str
    folder: Path  # the searched folder, as given to --cache-folder
    sources: tuple[Path, ...]  # the authors' files: head, then LoRA
    converted: Path
    pins: Path

    @property
    def has_sources(self) -> bool:
        return all(path.is_file() for path in self.sources)


def layouts(entry: ZooEntry, folder: Path) -> list[CachedModel]:
    """peft-ser's layout, then the original package's, in ``folder``."""
    ours = folder / "zoo" / entry.name
    original = (folder / f"{entry.name}.pt", folder / f"{entry.name}_lora.pt")
    return [
        CachedModel(
            entry.name,
            folder,
            tuple(ours / file.filename for file in entry.files),
            ours / f"{entry.name}.safetensors",
            ours / f"{entry.name}.sha256",
        ),
        CachedModel(
            entry.name,
            folder,
            original,
            folder / f"{entry.name}.safetensors",
            folder / f"{entry.name}.sha256",
        ),
    ]


def candidates(entry: ZooEntry, cache_dir: str | Path | None = None) -> Iterator[CachedModel]:
    for folder in search_folders(cache_dir):
        yield from layouts(entry, folder)


# --- hashes and pins ----------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def local_pins(cached: CachedModel) -> dict[str, str]:
    """File name → sha256 from the pin file (``sha256sum`` format), empty when there is none."""
    if not cached.pins.is_file():
        return {}
    pins = {}
    for line in cached.pins.read_text(encoding="utf-8").splitlines():
        digest, _, filename = line.strip().partition("  ")
        if digest and filename:
            pins[filename] = digest
    return pins


def pins_of(cached: CachedModel, files: tuple[ZooFile, ...]) -> list[list[str]]:
    """Per source file, every hash it must have: the zoo table's pin and the local pin."""
    local = local_pins(cached)
    return [
        file.pinned + ([local[source.name]] if source.name in local else [])
        for source, file in zip(cached.sources, files, strict=True)
    ]


def check_pinned(path: Path, seen: str, pins: list[str], url: str) -> None:
    """Refuse a file whose hash differs from a pin."""
    for pin in pins:
        if seen != pin:
            raise ZooError(
                f"{path}: sha256 {seen} does not match the pinned {pin}; the file is corrupt or "
                f"not the released one. Delete it and fetch {url} again"
            )


def warn_unpinned_once(cached: CachedModel, source: Path, seen: str) -> None:
    """Say once per file (when it is converted) which hash it has and how to pin it."""
    if source in _warned:
        return
    _warned.add(source)
    logger.warning(
        "%s has sha256 %s, which is not pinned. Once you trust this file, run `peft-ser zoo pin "
        "%s --cache-folder %s`: its hash is then kept in %s and a file that changes is refused",
        source,
        seen,
        cached.name,
        cached.folder,
        cached.pins,
    )


def pin(name: str, cache_dir: str | Path | None = None) -> dict[Path, str]:
    """Record the sha256 of a released model's cached files in its local pin file.

    Raises `ZooError` when no folder holds both files, or when a file differs from a hash pinned
    in the zoo table.
    """
    entry = zoo_entry(name)
    for cached in candidates(entry, cache_dir):
        if cached.has_sources:
            hashes = {source: sha256_of(source) for source in cached.sources}
            for (source, seen), file in zip(hashes.items(), entry.files, strict=True):
                check_pinned(source, seen, file.pinned, file.url)
            lines = "".join(f"{seen}  {source.name}\n" for source, seen in hashes.items())
            write_atomic(cached.pins, lines)
            return hashes
    folders = ", ".join(str(folder) for folder in search_folders(cache_dir))
    raise ZooError(
        f"no files of {name} to pin in {folders}: load the model once (it downloads them), or "
        f"place the authors' {name}.pt and {name}_lora.pt there, then pin"
    )


# --- download -----------------------------------------------------------------------------------


def fetch_url(url: str, destination: Path) -> None:
    """Stream ``url`` into ``destination`` (an open-for-writing path the caller owns)."""
    with (
        urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
        destination.open("wb") as out,
    ):
        while chunk := response.read(_CHUNK):
            out.write(chunk)


def _download_one(name: str, file: ZooFile, target: Path, folder: Path) -> None:
    """Fetch into a temporary file beside ``target`` and rename it only once it is complete.

    Offline, the error names the URL and where the file goes, in either layout of ``folder``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    os.close(handle)
    partial = Path(temporary)
    try:
        fetch_url(file.url, partial)
        check_pinned(target, sha256_of(partial), file.pinned, file.url)
        os.replace(partial, target)
    except OSError as error:
        raise ZooError(
            f"could not download {file.url} ({error}). Without network access, fetch that URL "
            f"on a connected machine and place the file at {target} (or keep the original "
            f"package's files, {folder / name}.pt and {folder / name}_lora.pt)"
        ) from error
    finally:
        partial.unlink(missing_ok=True)


def download(name: str, cache_dir: str | Path | None = None) -> list[Path]:
    """The released model's files in peft-ser's layout (head first, then LoRA), fetching missing
    ones; a file whose hash differs from one pinned in the zoo table is refused."""
    entry = zoo_entry(name)
    paths = []
    for file in entry.files:
        target = cached_path(name, file, cache_dir)
        if target.is_file():
            check_pinned(target, sha256_of(target), file.pinned, file.url)
        else:
            _download_one(name, file, target, cache_root(cache_dir))
        paths.append(target)
    return paths


# --- converted copies ---------------------------------------------------------------------------


def source_record(path: Path, seen: str) -> dict[str, str | int]:
    """What identifies a converted file's source: its name, size, modification time and hash."""
    status = path.stat()
    return {
        "file": path.name,
        "size": status.st_size,
        "mtime_ns": status.st_mtime_ns,
        "sha256": seen,
    }


def _is_current(record: dict[str, str | int], source: Path, pins: list[str]) -> bool:
    """A source still as converted (or gone since), and its recorded hash the pinned one."""
    if any(pin != record.get("sha256") for pin in pins):
        return False
    if not source.is_file():
        return True
    status = source.stat()
    return (record.get("size"), record.get("mtime_ns")) == (status.st_size, status.st_mtime_ns)


def read_converted(cached: CachedModel, pins: list[list[str]]) -> dict[str, torch.Tensor] | None:
    """The converted weights, when they exist and still stand for the files beside them."""
    if not cached.converted.is_file():
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(cached.converted), framework="pt") as handle:
            metadata = handle.metadata() or {}
            records = json.loads(metadata.get("sources", "[]"))
            if metadata.get("format") != CONVERTED_FORMAT or len(records) != len(cached.sources):
                return None
            if not all(
                _is_current(record, source, pin_list)
                for record, source, pin_list in zip(records, cached.sources, pins, strict=True)
            ):
                return None
            return {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        logger.info("%s: not usable (%s); converting again", cached.converted, error)
        return None


def write_converted(
    cached: CachedModel, state: dict[str, torch.Tensor], records: list[dict[str, str | int]]
) -> None:
    """Keep the converted weights beside their sources; a read-only folder is not an error."""
    from safetensors.torch import save_file

    tensors = {key: value.detach().contiguous().clone() for key, value in state.items()}
    metadata = {"format": CONVERTED_FORMAT, "name": cached.name, "sources": json.dumps(records)}
    try:
        write_atomic_with(cached.converted, lambda path: save_file(tensors, path, metadata))
    except OSError as error:
        logger.info("could not keep converted weights at %s (%s)", cached.converted, error)
