"""Atomic writes: the umask's permissions, and nothing changed or left behind on failure."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from peft_ser.fileio import write_atomic, write_atomic_with


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
