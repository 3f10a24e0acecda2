"""Atomic writes (the umask's permissions, nothing changed or left behind on failure, a refused
write named by its target), one-line storage errors, and the one-writer folder lock."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from peft_ser.utils import fileio
from peft_ser.utils.fileio import (
    FolderBusyError,
    FolderLock,
    StorageError,
    storage_errors,
    write_atomic,
    write_atomic_with,
)


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test that sets it (reading it means setting it)."""
    previous = os.umask(0)
    os.umask(previous)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def write_text_with(path: Path) -> None:
    write_atomic_with(path, lambda temporary: Path(temporary).write_text("made"))


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
@pytest.mark.parametrize("writer", ["write_atomic", "write_atomic_with"])
def test_new_files_get_the_mode_of_the_umask(tmp_path, umask, mask, expected, writer):
    os.umask(mask)
    target = tmp_path / "out" / "file.txt"
    if writer == "write_atomic":
        write_atomic(target, "made")
    else:
        write_text_with(target)
    assert mode(target) == expected == 0o666 & ~mask
    assert target.read_text() == "made"


def test_replacing_a_file_applies_the_umask_again(tmp_path, umask):
    target = tmp_path / "file.txt"
    target.write_text("old")
    target.chmod(0o600)
    os.umask(0o022)
    write_atomic(target, b"new")
    assert (mode(target), target.read_bytes()) == (0o644, b"new")


def fail_after_writing(temporary: str) -> None:
    Path(temporary).write_text("partial")
    raise OSError("disk full")


def test_failing_writer_leaves_the_target_untouched(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("old")
    with pytest.raises(OSError, match="disk full"):
        write_atomic_with(target, fail_after_writing)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]


def interrupt(temporary: str) -> None:
    raise KeyboardInterrupt


def test_interrupted_writer_creates_no_target_and_no_temporary_file(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        write_atomic_with(tmp_path / "file.txt", interrupt)
    assert list(tmp_path.iterdir()) == []


def test_writes_leave_only_the_target(tmp_path):
    write_atomic(tmp_path / "sub" / "f.txt", "one")
    write_atomic(tmp_path / "sub" / "f.txt", b"two")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["f.txt"]
    assert (tmp_path / "sub" / "f.txt").read_text() == "two"


class RustWriteError(Exception):
    """Stands for safetensors' SafetensorError, which carries the system error in its text."""


@pytest.mark.parametrize(
    "failure",
    [
        lambda temporary: OSError(errno.ENOSPC, "No space left on device", temporary),
        lambda temporary: RustWriteError(f"I/O error: No space left (os error 28) at {temporary}"),
    ],
)
def test_a_full_disk_is_reported_on_the_target_not_the_temporary(tmp_path, failure):
    target = tmp_path / "weights.bin"

    def fails(temporary: str) -> None:
        Path(temporary).write_bytes(b"half")
        raise failure(temporary)

    with pytest.raises(StorageError) as refused, storage_errors("make room"):
        write_atomic_with(target, fails)
    assert str(refused.value) == f"{target}: no space left on the device; make room"
    assert list(tmp_path.iterdir()) == []


def test_an_error_about_another_file_is_not_blamed_on_the_target(tmp_path):
    def reads_a_missing_file(temporary: str) -> None:
        Path(tmp_path / "source.wav").read_bytes()

    with pytest.raises(FileNotFoundError) as failed:
        write_atomic_with(tmp_path / "out.csv", reads_a_missing_file)
    assert failed.value.filename == str(tmp_path / "source.wav")


# -- the folder lock -----------------------------------------------------------------------------


def test_a_second_lock_on_a_folder_is_refused_naming_the_holder(tmp_path):
    holder = rf"in use by another training \(process {os.getpid()} on {socket.gethostname()} "
    with FolderLock(tmp_path, "training"), pytest.raises(FolderBusyError, match=holder):
        FolderLock(tmp_path, "training").acquire()
    with FolderLock(tmp_path, "training"):  # released: free again
        pass


def _stale_lock(folder: Path, pid: int, host: str | None = None) -> None:
    record = {"pid": pid, "host": host or socket.gethostname(), "since": 0}
    (folder / fileio.LOCK_FILE).write_text(json.dumps(record))


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    pid = _dead_pid()
    _stale_lock(tmp_path, pid)
    with caplog.at_level(logging.WARNING, logger="peft_ser"), FolderLock(tmp_path):
        pass
    assert f"taking over the lock left by process {pid}" in caplog.text


@pytest.fixture
def no_flock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without record locks (some FUSE file systems)."""

    def unsupported(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", unsupported)


def test_without_record_locks_a_live_holder_keeps_the_folder(tmp_path, no_flock):
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _stale_lock(tmp_path, live.pid)
        with pytest.raises(FolderBusyError, match=f"process {live.pid} on"):
            FolderLock(tmp_path).acquire()
        _stale_lock(tmp_path, live.pid, host="another-host")
        with pytest.raises(FolderBusyError, match="another-host"):
            FolderLock(tmp_path).acquire()
    finally:
        live.kill()
        live.wait()
    _stale_lock(tmp_path, _dead_pid())
    with FolderLock(tmp_path):
        assert json.loads((tmp_path / fileio.LOCK_FILE).read_text())["pid"] == os.getpid()


HOLD_AND_FORK = (
    "import os, sys, time\n"
    "from peft_ser.utils.fileio import FolderLock\n"
    "FolderLock(sys.argv[1]).acquire()\n"
    "child = os.fork()\n"  # as a data-loading worker is forked
    "if child == 0:\n"
    "    time.sleep(60)\n"
    "    os._exit(0)\n"
    "print(child, flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_killed_holders_forked_children_do_not_keep_its_folder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_AND_FORK, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    child = int(holder.stdout.readline())
    try:
        with pytest.raises(FolderBusyError, match=f"process {holder.pid} "):
            FolderLock(tmp_path).acquire()
        os.kill(holder.pid, 9)
        holder.wait()
        with FolderLock(tmp_path):  # the child still runs, with the parent's descriptor
            os.kill(child, 0)
    finally:
        os.kill(child, 9)


def test_a_lock_whose_holder_record_cannot_be_written_is_not_kept(tmp_path, monkeypatch):
    """A full disk while naming the holder fails the acquire and leaves the folder free."""
    import errno

    write = os.pwrite

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(OSError):
        FolderLock(tmp_path).acquire()
    monkeypatch.setattr(os, "pwrite", write)
    other = (
        "from peft_ser.utils.fileio import FolderLock; import sys; "
        "FolderLock(sys.argv[1]).acquire()"
    )
    taken = subprocess.run([sys.executable, "-c", other, str(tmp_path)], capture_output=True)
    assert taken.returncode == 0, taken.stderr.decode()  # the kernel released the record lock
    with FolderLock(tmp_path):  # and this process's own table does not hold it either
        pass
