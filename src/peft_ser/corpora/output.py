"""Writing a prepared folder whole: a reader (or a failure) never meets half of one.

A prepared folder is several files that must agree (manifest.csv, folds.json, labels.json,
targets.json, report.csv, summary.*). Replacing them one by one, a full disk or a kill
between two files leaves the new manifest beside the old folds. So `replacing` builds the new
folder in a temporary sibling (``.<name>.new-*``), moves into it what an earlier run left
that is not a preparation output (the audio cache, MELD's decoded audio, the user's own
files), then swaps it in: the old folder is renamed aside (``.<name>.old-*``), the new one
renamed in, the old one removed. Until the first rename the old folder is untouched; a
failure before it removes the temporary sibling and moves back what was carried.

One folder, one writer: a lock file ``.<name>.lock`` beside the folder holds the writer's
process id and host; a second `prepare` into the same folder is refused with a line naming
them, and a lock whose holder is dead (same host, no such process) is taken over. The new
holder first repairs what a killed writer left: a folder renamed aside but not replaced is
renamed back, carried entries are moved back, temporary siblings are removed.

A disk that fills up, a read-only or forbidden folder and an ``--out`` that is a file are
`CorpusError` lines naming the path (the old folder, if any, is as it was).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from peft_ser.corpora.base import CorpusError
from peft_ser.corpora.summary import REPORT_FILE, SUMMARY_JSON, SUMMARY_TXT
from peft_ser.manifest import FOLDS_FILE, LABELS_FILE, MANIFEST_FILE, TARGETS_FILE

OUTPUTS = (MANIFEST_FILE, FOLDS_FILE, LABELS_FILE, TARGETS_FILE, REPORT_FILE, SUMMARY_JSON,
           SUMMARY_TXT)  # fmt: skip
"""What a preparation writes; everything else in the folder is carried to the new one."""
OURS = (*OUTPUTS, "audio", "audio_cache")
"""Names that mark a folder as made by `prepare` (MELD's decoded audio, the default cache)."""
_STALE_LOCK_SECONDS = 30.0
"""A lock file without a readable holder (its writer died between creating and filling it)
is taken over once it is this old."""
_DISK_PROBLEMS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied (read-only folder?)",
    errno.EPERM: "permission denied (read-only folder?)",
    errno.ENOTDIR: "a file stands where a folder is needed",
    errno.EEXIST: "a file stands where a folder is needed",
    errno.EBUSY: "busy (a mount point, or in use?)",
    errno.EXDEV: "on another file system than its parent folder (a mount point?)",
}


def disk_problem(error: OSError) -> str | None:
    """The words for an `OSError` of a full, read-only or forbidden disk; ``None`` for
    another error (a bug, which should show its traceback)."""
    return _DISK_PROBLEMS.get(error.errno) if error.errno is not None else None


@contextmanager
def disk_errors(path: Path, doing: str, kept: str = "") -> Iterator[None]:
    """Turn a full, read-only or forbidden disk met inside the block into one `CorpusError`
    line: ``cannot <doing> <path>: <problem>[; <kept>]``."""
    try:
        yield
    except OSError as error:
        problem = disk_problem(error)
        if problem is None:
            raise
        raise CorpusError(
            f"cannot {doing} {path}: {problem}{f'; {kept}' if kept else ''}"
        ) from error


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
    with disk_errors(out, "write the prepared corpus", kept), _locked(out):
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


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold ``out``'s lock for the block; refuse when a live process holds it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(out)
    mine = f"{os.getpid()} {socket.gethostname()}\n"
    if not _create(lock, mine):
        holder = _holder(lock)
        if holder is not None:
            pid, host = holder
            raise CorpusError(
                f"another prepare (process {pid} on {host}) is writing {out}; wait for it to "
                f"finish (if no such process runs, remove {lock})"
            )
        lock.unlink(missing_ok=True)
        if not _create(lock, mine):
            raise CorpusError(f"another prepare took over the lock {lock} of {out} just now")
    try:
        yield
    finally:
        if _read(lock) == mine:
            lock.unlink(missing_ok=True)


def _create(lock: Path, content: str) -> bool:
    """Create ``lock`` holding ``content``; False when it exists already."""
    try:
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
    except BaseException:  # a full disk: no empty lock left behind
        lock.unlink(missing_ok=True)
        raise
    return True


def _read(lock: Path) -> str | None:
    try:
        return lock.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _holder(lock: Path) -> tuple[int, str] | None:
    """``(pid, host)`` of a live holder of ``lock``; ``None`` when the lock is stale: its
    process is gone (on this host), or it names none and is older than a few seconds."""
    text = _read(lock)
    pid_text, _, host = (text or "").strip().partition(" ")
    if not pid_text.isdigit():
        try:
            age = time.time() - lock.stat().st_mtime
        except FileNotFoundError:
            return None
        return (0, "an unknown host") if age < _STALE_LOCK_SECONDS else None
    pid = int(pid_text)
    if host != socket.gethostname():
        return pid, host
    return (pid, host) if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True
