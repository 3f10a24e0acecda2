"""Faults met while writing a prepared folder: numeric options out of range, a full or
read-only disk, an --out that is a file or someone else's folder, a failure mid-way, a
killed writer, and two writers at once. Each ends in one line (exit 2) or a whole folder,
and an earlier prepared folder is either kept as it was or replaced whole."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from _clips import tone, write_table
from typer.testing import CliRunner

import peft_ser.data.manifest
from peft_ser.cli import app
from peft_ser.corpora import prepare_table, preprocess_corpus
from peft_ser.corpora.output import lock_path
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import StorageError

runner = CliRunner()


def clips_table(root: Path, labels=("angry", "calm")) -> Path:
    """A table of one clip per speaker s1..s6 and label."""
    rows = [
        {"path": str(tone(root / f"clips/s{n}_{label}.wav")), "label": label, "speaker": f"s{n}"}
        for n in range(1, 7)
        for label in labels
    ]
    return write_table(root / "clips.csv", rows)


def one_line_error(args: list[str]) -> str:
    """The single ``error:`` line of a command that must exit with status 2."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.split("\n") if line and "\r" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0].removeprefix("error: ")


def cli_error(args: list[str]) -> str:
    """The single ``error:`` line of ``peft-ser <args>`` run as its own process (exit 2)."""
    done = subprocess.run(
        [sys.executable, "-m", "peft_ser.cli", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.split("\n") if line and "\r" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0].removeprefix("error: ")


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` by relative path, with its bytes."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def leftovers(out: Path) -> list[str]:
    """Temporary siblings left beside ``out`` (its lock file, emptied, stays)."""
    return sorted(
        p.name
        for p in out.parent.iterdir()
        if p.name.startswith(f".{out.name}.") and p != lock_path(out)
    )


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--min-duration", "nan", "--min-duration nan: give a finite number of seconds, 0 or more"),
        ("--min-duration", "inf", "--min-duration inf: give a finite number of seconds, 0 or more"),
        ("--min-duration", "-0.5", "--min-duration -0.5: give a finite number of seconds"),
        ("--folds-k", "0", "--folds-k 0: k-fold needs at least 2 folds"),
        ("--folds-k", "-3", "--folds-k -3: k-fold needs at least 2 folds"),
        ("--folds-k", "1000000000", "--folds-k 1000000000: at most 1000 folds"),
        ("--seed", "-1", "--seed -1: give a whole number from 0 to 4294967295"),
        ("--seed", str(2**32), f"--seed {2**32}: give a whole number from 0 to 4294967295"),
        ("--min-per-class", "-2", "--min-per-class -2 must be 0 or more"),
    ],
)
def test_numeric_options_out_of_range_are_one_line(tmp_path, option, value, message):
    args = ["prepare", "table", "--manifest", str(clips_table(tmp_path)), option, value]
    assert one_line_error([*args, "--out", str(tmp_path / "out")]).startswith(message)
    assert not (tmp_path / "out").exists()


def test_a_named_corpus_refuses_a_nan_minimum_too(tmp_path):
    message = one_line_error(["prepare", "emodb", "--root", str(tmp_path), "--min-duration", "nan"])
    assert message.startswith("--min-duration nan: give a finite number of seconds")


@pytest.mark.parametrize("rate", ["0", "-16000", "1000000000"])
def test_preprocess_refuses_an_impossible_rate(tmp_path, rate):
    prepare_table(clips_table(tmp_path), tmp_path / "out")
    message = one_line_error(["preprocess", str(tmp_path / "out"), "--sample-rate", rate])
    assert message == f"--sample-rate {rate}: give a rate from 1000 to 384000 Hz"


def test_re_preparing_replaces_the_outputs_and_keeps_the_cache_and_other_files(tmp_path):
    out = tmp_path / "out"
    prepare_table(clips_table(tmp_path), out)
    preprocess_corpus(out)
    (out / "notes.txt").write_text("mine")
    cached = snapshot(out / "audio_cache")
    table = clips_table(tmp_path, labels=("angry", "calm", "sad"))
    prepared = prepare_table(table, out)
    assert prepared.labels == ["angry", "calm", "sad"]
    assert snapshot(out / "audio_cache") == cached
    assert (out / "notes.txt").read_text() == "mine"
    assert leftovers(out) == []


def failing_write(name: str):
    """A `write_atomic` that fills the disk when it comes to the file ``name``."""
    real = peft_ser.data.manifest.write_atomic

    def write(path, data):
        if Path(path).name == name:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)

    return write


@pytest.mark.parametrize("name", ["folds.json", "labels.json"])
def test_a_full_disk_mid_way_leaves_the_old_folder_whole(tmp_path, monkeypatch, name):
    out = tmp_path / "out"
    prepare_table(clips_table(tmp_path), out)
    preprocess_corpus(out)
    before = snapshot(out)
    monkeypatch.setattr(peft_ser.data.manifest, "write_atomic", failing_write(name))
    table = clips_table(tmp_path, labels=("angry", "calm", "sad"))
    message = one_line_error(["prepare", "table", "--manifest", str(table), "--out", str(out)])
    assert message.startswith(
        f"cannot write the prepared corpus {out}: no space left on the device"
    )
    assert message.endswith(f"; {out} is as it was")
    assert snapshot(out) == before
    assert leftovers(out) == []


def test_a_full_disk_on_a_fresh_folder_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(peft_ser.data.manifest, "write_atomic", failing_write("manifest.csv"))
    out = tmp_path / "out"
    with pytest.raises(StorageError, match=r"no space left on the device.*; nothing was written$"):
        prepare_table(clips_table(tmp_path), out)
    assert not out.exists() and leftovers(out) == []


def test_a_failed_preparation_keeps_the_old_folder_and_reports_beside_it(tmp_path):
    out = tmp_path / "out"
    prepare_table(clips_table(tmp_path), out)
    before = snapshot(out)
    lonely = write_table(tmp_path / "one.csv", [{"path": str(tone(tmp_path / "x.wav")),
                                                 "label": "calm", "speaker": "s1"}])  # fmt: skip
    message = one_line_error(["prepare", "table", "--manifest", str(lonely), "--out", str(out)])
    assert message.startswith("only 1 class (calm)")
    assert message.endswith(
        f"(0 excluded; see {tmp_path / 'out.failed-report.csv'}): a classifier needs 2"
    )
    assert snapshot(out) == before
    assert (tmp_path / "out.failed-report.csv").read_text().startswith("key,path,reason,detail")


@pytest.mark.parametrize("where", ["file", "below a file"])
def test_an_out_that_is_a_file_is_one_line_and_the_file_is_kept(tmp_path, where):
    target = tmp_path / "taken.csv"
    target.write_text("precious")
    out = target if where == "file" else target / "sub"
    message = one_line_error(
        ["prepare", "table", "--manifest", str(clips_table(tmp_path)), "--out", str(out)]
    )
    assert str(target) in message
    assert target.read_text() == "precious"


def test_an_out_folder_that_holds_no_prepared_corpus_is_refused(tmp_path):
    table = clips_table(tmp_path)
    message = one_line_error(["prepare", "table", "--manifest", str(table), "--out", str(tmp_path)])
    assert message.startswith(f"--out {tmp_path} is a folder that holds no prepared corpus (clips,")
    assert message.endswith("choose a new or empty folder, it is replaced whole")


def test_a_read_only_parent_is_one_line(tmp_path):
    parent = tmp_path / "ro"
    parent.mkdir()
    out = parent / "out"
    prepare_table(clips_table(tmp_path), out)
    before = snapshot(out)
    parent.chmod(0o555)
    try:
        if os.access(parent, os.W_OK):
            pytest.skip("chmod does not keep this user (root) from writing")
        message = one_line_error(
            ["prepare", "table", "--manifest", str(clips_table(tmp_path)), "--out", str(out)]
        )
        assert message.startswith(f"cannot write the prepared corpus {out}: permission denied")
        assert snapshot(out) == before
    finally:
        parent.chmod(0o755)


@pytest.fixture
def small_disk(tmp_path):
    """A 200-kB tmpfs (needs root and mount), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(mount)],
                          capture_output=True, check=False)  # fmt: skip
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    yield mount
    if subprocess.run(["umount", str(mount)], check=False).returncode:
        subprocess.run(["umount", "-l", str(mount)], check=True)  # busy: detach it all the same


@pytest.mark.slow
def test_a_really_full_disk_keeps_the_old_folder(tmp_path, small_disk):
    out = small_disk / "out"
    prepare_table(clips_table(tmp_path), out)
    before = snapshot(out)
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 1024):
            pass
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)
    table = clips_table(tmp_path, labels=("angry", "calm", "sad"))
    # as its own process, as a user runs it (FolderLock keeps its descriptor when the disk is
    # too full to write the holder's name, which the process's exit releases)
    message = cli_error(["prepare", "table", "--manifest", str(table), "--out", str(out)])
    assert message.startswith(
        f"cannot write the prepared corpus {out}: no space left on the device"
    )
    assert snapshot(out) == before
    assert leftovers(out) == []
    filler.unlink()
    assert prepare_table(table, out).labels == ["angry", "calm", "sad"]


def test_a_read_only_file_system_keeps_the_old_folder(tmp_path, small_disk):
    out = small_disk / "out"
    prepare_table(clips_table(tmp_path), out)
    before = snapshot(out)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        table = clips_table(tmp_path, labels=("angry", "calm", "sad"))
        message = one_line_error(["prepare", "table", "--manifest", str(table), "--out", str(out)])
        assert message == (
            f"cannot write the prepared corpus {out}: read-only file system; {out} is as it was"
        )
        message = one_line_error(["preprocess", str(out)])
        assert message.startswith(f"cannot write the audio cache {out / 'audio_cache'}: read-only")
        assert snapshot(out) == before
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)


def test_preprocess_on_a_full_disk_keeps_whole_entries(tmp_path, monkeypatch):
    out = tmp_path / "out"
    prepare_table(clips_table(tmp_path), out)
    import peft_ser.data.cache

    real, written = peft_ser.data.cache.write_atomic, []

    def write(path, data):
        if len(written) == 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, data)
        written.append(path)

    monkeypatch.setattr(peft_ser.data.cache, "write_atomic", write)
    message = one_line_error(["preprocess", str(out)])
    assert message == (
        f"cannot write the audio cache {out / 'audio_cache'}: no space left on the device; "
        "the entries written so far are whole and kept: run preprocess again to go on"
    )
    monkeypatch.undo()
    again = preprocess_corpus(out)
    assert (again.computed, again.cached) == (7, 5)


def test_preprocess_refuses_a_cache_that_is_a_file(tmp_path):
    prepare_table(clips_table(tmp_path), tmp_path / "out")
    (tmp_path / "cache").write_text("x")
    message = one_line_error(
        ["preprocess", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    )
    assert message == f"--cache-dir {tmp_path / 'cache'} is a file, not a folder"


HOLD = """
import sys, time
from pathlib import Path
from peft_ser.corpora.output import prepare_lock
with prepare_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_writer_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path):
    out = tmp_path / "out"
    table = clips_table(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        message = one_line_error(["prepare", "table", "--manifest", str(table), "--out", str(out)])
        assert message.startswith(
            f"{tmp_path} is in use by another prepare of out (process {holder.pid} on "
            f"{socket.gethostname()} since "
        )
        assert message.endswith("; wait for it to end, or use another folder")
    finally:
        holder.kill()
        holder.wait()
    assert lock_path(out).read_text()  # killed: its lock file still names it
    prepare_table(table, out)
    assert lock_path(out).read_text() == "" and (out / "manifest.csv").is_file()


def test_two_writers_at_once_leave_one_whole_folder(tmp_path, monkeypatch):
    out = tmp_path / "out"
    tables = [clips_table(tmp_path / "a"), clips_table(tmp_path / "b", ("angry", "calm", "sad"))]
    inside, refused = threading.Event(), threading.Event()
    real = peft_ser.corpora.prepare.save_prepared
    errors: list[Exception] = []

    def slow_save(directory, prepared):
        inside.set()
        refused.wait(30)
        real(directory, prepared)

    monkeypatch.setattr(peft_ser.corpora.prepare, "save_prepared", slow_save)

    def first():
        prepare_table(tables[0], out)

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(30)
    try:
        prepare_table(tables[1], out)
    except UserError as error:
        errors.append(error)
    refused.set()
    thread.join()
    assert len(errors) == 1 and str(errors[0]).startswith(
        f"{tmp_path} is in use by another prepare of out"
    )
    assert peft_ser.data.manifest.read_prepared(out).labels == ["angry", "calm"]
    assert leftovers(out) == []


def test_a_writer_killed_mid_swap_is_repaired_by_the_next(tmp_path):
    out = tmp_path / "out"
    table = clips_table(tmp_path)
    prepare_table(table, out)
    preprocess_corpus(out)
    cached = snapshot(out / "audio_cache")
    # the state a kill between "rename the old folder aside" and "rename the new one in" leaves
    aside = tmp_path / ".out.old-1-dead"
    aside.mkdir()
    staging = tmp_path / ".out.new-1-dead"
    staging.mkdir()
    (out / "audio_cache").rename(staging / "audio_cache")
    out.rename(aside / "corpus")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    lock_path(out).write_text(f"{dead.stdout.strip()} {socket.gethostname()}\n")
    prepare_table(clips_table(tmp_path, ("angry", "calm", "sad")), out)
    assert snapshot(out / "audio_cache") == cached
    assert leftovers(out) == []
