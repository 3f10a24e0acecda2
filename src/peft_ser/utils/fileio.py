"""Atomic file writes: a reader sees either the old file or the whole new one, never a part.

Data goes to a temporary file in the target's folder, which is then renamed over the target.
`tempfile.mkstemp` creates files readable by their owner only (mode 0600); the written file
gets the mode any ordinary file would get (0666 minus the umask), so results, models and
manifests stay readable by the collaborators and services the umask allows.

A write refused by the machine (a full disk, a read-only folder) raises an `OSError` that names
the target, not the temporary file; `storage_errors` turns it into a one-line `StorageError`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from peft_ser.utils.errors import UserError, environment_problem

log = logging.getLogger(__name__)


class StorageError(UserError):
    """A write the machine refused: no space left, a read-only or forbidden folder."""


@contextmanager
def storage_errors(advice: str = "") -> Iterator[None]:
    """Report an `OSError` of the machine or of a path (`peft_ser.utils.errors.ENVIRONMENT_ERRNOS`)
    as a `StorageError`: ``<path>: <problem>``, plus ``advice`` where the machine refused (a
    full, read-only or forbidden disk: making room is the fix), not where the path is wrong (a
    file where a folder belongs); any other error passes as is."""
    try:
        yield
    except OSError as error:
        problem = environment_problem(error)
        if problem is None:
            raise
        refused = error.errno in MACHINE_REFUSALS
        raise StorageError(f"{problem}{'; ' + advice if advice and refused else ''}") from error


def output_folder(path: str | os.PathLike[str], option: str) -> Path:
    """``path`` as a folder to write into, checked before any work: refused in one line when
    it, or a folder above it, is a file (nothing is written then)."""
    folder = Path(path)
    for existing in (folder, *folder.parents):
        if not existing.exists():
            continue
        if not existing.is_dir():
            where = "is a file" if existing == folder else f"lies below {existing}, a file"
            raise StorageError(f"{option} {folder} {where}; it names a folder to write into")
        break
    return folder


MACHINE_REFUSALS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
"""The failures `storage_errors` gives its advice for: the disk, not the path, said no."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic_with(path: str | os.PathLike[str], write: Callable[[str], object]) -> None:
    """Let ``write(temporary_path)`` fill a temporary file, then move it onto ``path``.

    The parent folder is created when needed; on any failure the temporary file is removed
    and ``path`` is left as it was. What ``write`` returns is ignored, so writers that return
    something (``Path.write_bytes`` returns a byte count) can be passed as they are.
    """
    target = Path(path)
    temporary = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
        )
        os.close(fd)
        write(temporary)
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, target)
    except BaseException as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        code = _system_errno(error, (None, temporary, str(target.parent)))
        if code is not None:
            raise OSError(code, os.strerror(code), str(target)) from error  # not the temporary
        raise


def _system_errno(error: BaseException, ours: tuple[str | None, ...]) -> int | None:
    """The system error number of a failed write of one of ``ours`` (paths), else None.

    Writers backed by Rust (safetensors) report the system's error only in their message, as
    ``(os error 28)``; an `OSError` about another file (one the writer reads) is not ours.
    """
    if isinstance(error, OSError):
        return error.errno if error.filename in ours else None
    found = re.search(r"\(os error (\d+)\)", str(error))
    return int(found.group(1)) if found else None


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> None:
    """Write text (UTF-8) or bytes to ``path`` atomically, with the umask's permissions."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    write_atomic_with(path, lambda temporary: Path(temporary).write_bytes(payload))


LOCK_FILE = ".lock"


class FolderBusyError(UserError):
    """Another live process holds the folder's lock."""


class FolderLock:
    """One writer per folder: an exclusive POSIX record lock (`fcntl.lockf`) on
    ``<folder>/.lock``, which names its holder (process id, host, start time) for the message
    that refuses a second writer.

    The kernel releases the lock when its holder exits, however it exits, so a lock left by a
    killed process is simply taken (with a warning naming the process that left it). Record
    locks, unlike ``flock``, are not inherited by forked children (data-loading workers), so a
    killed run's lingering workers do not keep its folder; they also hold across NFS. Within one
    process the kernel does not tell two record locks apart, so this process's own locks are
    kept in `_HELD`. The file is emptied, not removed, on release: removing it would let a
    process that opened the old file lock it while another locks a new one. On a file system
    without record locks the holder is checked by process id instead (a live process on this
    host, or one on another host, keeps the folder).
    """

    def __init__(
        self,
        folder: str | os.PathLike[str],
        what: str = "folder",
        lock_file: str | os.PathLike[str] | None = None,
    ) -> None:
        """``lock_file`` (default ``<folder>/.lock``) is where the lock lives; a folder that is
        itself replaced whole keeps its lock beside it."""
        self.path = Path(folder) / LOCK_FILE if lock_file is None else Path(lock_file)
        self.what = what
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise `FolderBusyError` naming its live holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if _identity(self.path) in _HELD:  # opening it again and closing would release it
            raise FolderBusyError(self._busy(_HELD[_identity(self.path)]))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666 & ~_umask())
        try:
            taken = _lock(fd)
            previous = _holder(fd)  # read once locked: a holder that just released is gone
            busy = not taken if taken is not None else bool(previous) and _may_run(previous)
            if busy:
                raise FolderBusyError(self._busy(previous))
            record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)  # a full disk fails here
        except BaseException:
            os.close(fd)  # releases the lock too
            raise
        if previous:
            log.warning(
                "%s: taking over the lock left by %s, which is no longer running",
                self.path.parent, _describe(previous),
            )  # fmt: skip
        self._fd = fd
        _HELD[_identity(self.path)] = record

    def _busy(self, holder: dict[str, object]) -> str:
        return (
            f"{self.path.parent} is in use by another {self.what} ({_describe(holder)}); "
            "wait for it to end, or use another folder"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        _HELD.pop(_identity(self.path), None)
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing releases the record lock
        self._fd = None


_HELD: dict[tuple[int, int], dict[str, object]] = {}
"""This process's folder locks, by the lock file's (device, inode)."""


def _identity(path: Path) -> tuple[int, int]:
    try:
        status = path.stat()
    except FileNotFoundError:
        return (-1, -1)
    return (status.st_dev, status.st_ino)


def _lock(fd: int) -> bool | None:
    """Try the exclusive lock: True when taken, False when another process holds it, None
    when the file system has no record locks."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EAGAIN):
            return False
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            return None
        raise
    return True


def _holder(fd: int) -> dict[str, object]:
    """The holder a lock file names (empty: none, or unreadable)."""
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _may_run(holder: dict[str, object]) -> bool:
    """Without record locks: whether the holder may still run (on another host there is no
    knowing; on this one, whether its process id is alive)."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname():
        return True
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _describe(holder: dict[str, object]) -> str:
    if not holder:
        return "a process that left no name"
    since = holder.get("since")
    when = (
        time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since))
        if isinstance(since, int | float)
        else ""
    )
    return f"process {holder.get('pid')} on {holder.get('host')}{when}"
