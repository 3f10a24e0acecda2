"""Writing a prepared folder whole: a reader (or a failure) never meets half of one.

A prepared folder is several files that must agree (manifest.csv, folds.json, labels.json,
targets.json, report.csv, summary.*). Replacing them one by one, a full disk or a kill
between two files leaves the new manifest beside the old folds. So `replacing` builds the new
folder in a temporary sibling (``.<name>.new-*``), moves into it what an earlier run left
that is not a preparation output (the audio cache, MELD's decoded audio, the user's own
files), then swaps it in: the old folder is renamed aside (``.<name>.old-*``), the new one
renamed in, the old one removed. Until the first rename the old folder is untouched; a
failure before it removes the temporary sibling and moves back what was carried.

One folder, one writer: `peft_ser.utils.fileio.FolderLock` on a lock file ``.<name>.lock`` beside
the folder (the folder itself is what gets swapped); a second `prepare` into the same folder
is refused with a line naming the holder's process and host, and a dead holder's lock is
taken over. The new holder first repairs what a killed writer left: a folder renamed aside
but not replaced is renamed back, carried entries are moved back, temporaries are removed.

A disk that fills up, a read-only or forbidden folder (`StorageError`) and an ``--out`` that
is a file (`CorpusError`) are one line naming the folder; the old folder is as it was.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from peft_ser.corpora.base import CorpusError
from peft_ser.corpora.summary import REPORT_FILE, SUMMARY_JSON, SUMMARY_TXT
from peft_ser.data.manifest import FOLDS_FILE, LABELS_FILE, MANIFEST_FILE, TARGETS_FILE
from peft_ser.utils.errors import ENVIRONMENT_ERRNOS
from peft_ser.utils.fileio import FolderLock, StorageError

OUTPUTS = (MANIFEST_FILE, FOLDS_FILE, LABELS_FILE, TARGETS_FILE, REPORT_FILE, SUMMARY_JSON,
           SUMMARY_TXT)  # fmt: skip
"""What a preparation writes; everything else in the folder is carried to the new one."""
OURS = (*OUTPUTS, "audio", "audio_cache")
"""Names that mark a folder as made by `prepare` (MELD's decoded audio, the default cache)."""
_SWAP_ERRNOS = {
    errno.EBUSY: "busy (a mount point, or in use?)",
    errno.EXDEV: "on another file system than its parent folder (a mount point?)",
}
"""What renaming a folder adds to the disk failures of `ENVIRONMENT_ERRNOS`."""


@contextmanager
def disk_errors(path: Path, doing: str, kept: str = "") -> Iterator[None]:
    """Turn a full, read-only or forbidden disk met inside the block into one `StorageError`
    line naming ``path`` (not the temporary file that met it): ``cannot <doing> <path>:
    <problem>[; <kept>]``."""
    try:
        yield
    except OSError as error:
        code = error.errno or 0
        problem = ENVIRONMENT_ERRNOS.get(code) or _SWAP_ERRNOS.get(code)
        if problem is None:
            raise
        advice = f"; {kept}" if kept else ""
        raise StorageError(f"cannot {doing} {path}: {problem}{advice}") from error


def check_out(out: str | Path) -> Path:
    """The folder a preparation may write: ``out`` itself (the folder it links to when it is a
    symbolic link). A file, or a non-empty folder that no preparation made (a corpus root,
    a home folder), is refused: the swap would move it aside."""
    path = Path(os.path.abspath(Path(out).expanduser()))
    if path.is_symlink():
        path = path.resolve()
    if path == Path(path.anchor) or Path.cwd().is_relative_to(path):
        raise CorpusError(
            f"--out {path} holds the current folder: choose a folder of its own for the "
            "prepared corpus, it is replaced whole"
        )
    if path.exists() and not path.is_dir():
        raise CorpusError(f"--out {path} is a file, not a folder: choose a folder for the corpus")
    if path.is_dir():
        with disk_errors(path, "read"):
            names = [name for name in os.listdir(path) if not name.startswith(".")]
        if names and not set(names) & set(OURS):
            shown = ", ".join(sorted(names)[:5]) + (", …" if len(names) > 5 else "")
            raise CorpusError(
                f"--out {path} is a folder that holds no prepared corpus ({shown}): "
                "choose a new or empty folder, it is replaced whole"
            )
    return path


def holds_corpus(out: Path) -> bool:
    """Whether ``out`` holds a prepared corpus that a failed preparation must leave alone."""
    return (out / MANIFEST_FILE).is_file()


def failure_report(out: Path) -> Path:
    """Where the report.csv of a preparation that ends in an error goes: into ``out`` when it
    holds no prepared corpus, else beside it (``<out>.failed-report.csv``), leaving it whole."""
    if holds_corpus(out):
        return out.with_name(f"{out.name}.failed-report.csv")
    return out / REPORT_FILE


@contextmanager
def replacing(out: Path) -> Iterator[Path]:
    """Hold the lock of ``out``, yield an empty temporary sibling to fill, and swap it in for
    ``out`` when the block ends without an exception (see the module docstring); on an
    exception the temporary sibling is removed and ``out`` is as it was."""
    kept = f"{out} is as it was" if out.exists() else "nothing was written"
    with disk_errors(out, "write the prepared corpus", kept), prepare_lock(out):
        _recover(out)
        staging = _sibling(out, "new")
        try:
            yield staging
            _swap(out, staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _swap(out: Path, staging: Path) -> None:
    """Carry ``out``'s other entries into ``staging``, then rename ``out`` aside, ``staging``
    in, and remove the old one; a failure before the second rename undoes the first."""
    if not out.exists():
        os.rename(staging, out)
        return
    carried = _carry(out, staging)
    aside = _sibling(out, "old")
    try:
        os.rename(out, aside / "corpus")
    except BaseException:
        os.rmdir(aside)
        _move(staging, out, carried)
        raise
    try:
        os.rename(staging, out)
    except BaseException:
        os.rename(aside / "corpus", out)
        _move(staging, out, carried)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _carry(out: Path, staging: Path) -> list[str]:
    """Move every entry of ``out`` that is no preparation output into ``staging`` (renames:
    the audio cache is not copied); on a failure, move back what was moved."""
    names = [name for name in os.listdir(out) if name not in OUTPUTS]
    moved: list[str] = []
    try:
        for name in names:
            os.rename(out / name, staging / name)
            moved.append(name)
    except BaseException:
        _move(staging, out, moved)
        raise
    return moved


def _move(source: Path, target: Path, names: list[str]) -> None:
    """Move back entries carried from ``target`` into ``source`` (best effort: an entry that
    cannot move stays where it is, whole)."""
    for name in names:
        if os.path.lexists(source / name) and not os.path.lexists(target / name):
            with suppress(OSError):
                os.rename(source / name, target / name)


def _recover(out: Path) -> None:
    """Repair what a writer killed during `replacing` left beside ``out``: a folder renamed
    aside and not replaced goes back, carried entries go back, temporaries are removed."""
    parent = out.parent
    if not parent.is_dir():
        return
    leftovers = sorted(parent.glob(f".{glob_escape(out.name)}.old-*"))
    for aside in leftovers:
        if not os.path.lexists(out) and (aside / "corpus").is_dir():
            os.rename(aside / "corpus", out)
        shutil.rmtree(aside, ignore_errors=True)
    for staging in sorted(parent.glob(f".{glob_escape(out.name)}.new-*")):
        if out.is_dir():
            _move(staging, out, [n for n in os.listdir(staging) if n not in OUTPUTS])
        shutil.rmtree(staging, ignore_errors=True)


def glob_escape(name: str) -> str:
    """``name`` with the characters `Path.glob` treats specially bracketed."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _sibling(out: Path, kind: str) -> Path:
    """A new empty folder ``.<name>.<kind>-<random>`` beside ``out``, with the permissions
    the umask gives any folder (the new prepared folder keeps them)."""
    path = out.with_name(f".{out.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")
    path.mkdir()
    return path


def lock_path(out: Path) -> Path:
    """The lock file of the prepared folder ``out``, beside it."""
    return out.with_name(f".{out.name}.lock")


def prepare_lock(out: Path) -> FolderLock:
    """The lock that makes one `prepare` at a time write ``out``."""
    return FolderLock(out.parent, f"prepare of {out.name}", lock_file=lock_path(out))
