"""The files around ``peft-ser predict``: finding the audio its arguments name, writing results.

Arguments are folders, files or glob patterns. Each argument that yields no audio file (an
empty folder, a pattern that matches nothing, a missing file) becomes a `Failure` reported
like an unreadable file, so no argument is ever dropped silently.

Results are a table, CSV, strict JSON (no NaN, which JSON does not have; predictions are
finite by construction) or the submission file of the Interspeech 2025 MSP-Podcast challenge
(`peft_ser.inference.challenge`). The output path is checked before any work, and the file is
written atomically, so an interrupted run never leaves half a CSV behind.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from peft_ser.data.audio import AudioError
from peft_ser.inference.challenge import submission_text
from peft_ser.inference.predict import Failure, Prediction, WindowPrediction
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import write_atomic

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
"""Files a directory search picks up (case-insensitive)."""
OUTPUT_FORMATS = ("table", "json", "csv", "challenge")
_SEARCHED = f"searched recursively for {', '.join(AUDIO_EXTENSIONS)}"


class OutputError(UserError, ValueError):
    """Predictions that cannot be written as asked: an unknown format or an unwritable path."""


@dataclass(frozen=True)
class FoundInputs:
    """What command-line arguments name: audio files to read, and arguments that name none."""

    paths: list[str]
    failures: list[Failure]

    @property
    def count(self) -> int:
        """Inputs asked for: each file found, and each argument that yielded none."""
        return len(self.paths) + len(self.failures)


def find_audio_inputs(arguments: Iterable[str]) -> FoundInputs:
    """Expand command-line arguments into input paths, in order, without duplicates.

    An existing path is taken as it is: a file is read whatever its extension, a directory
    yields its audio files (recursively, sorted). Otherwise an argument with ``*``, ``?`` or
    ``[`` is a glob pattern (``**`` descends into subfolders). An argument that yields no file
    is a `Failure` that says why, and so is a broken symbolic link among a folder's audio files
    (named like one, pointing nowhere): never skipped without a word.
    """
    paths: dict[str, None] = {}
    failures: dict[str, Failure] = {}
    for argument in arguments:
        found, problems = _expand(argument)
        paths.update(dict.fromkeys(found))
        for failure in problems:
            failures.setdefault(failure.source, failure)
    return FoundInputs(list(paths), list(failures.values()))


def _expand(argument: str) -> tuple[list[str], list[Failure]]:
    """The audio files ``argument`` names, and what it names that cannot be read."""
    if os.path.isdir(argument):
        found, broken = _audio_files(argument)
        if found or broken:
            return found, broken
        return [], [_nothing(argument, _empty_directory_problem(argument))]
    if os.path.exists(argument):
        return [argument], []
    if os.path.islink(argument):
        return [], [_broken_link(argument)]
    if not glob.has_magic(argument):
        return [], [_nothing(argument, "file does not exist", "missing")]
    found, broken = [], []
    for match in sorted(glob.glob(argument, recursive=True)):
        if os.path.isdir(match):
            files, links = _audio_files(match)
            found += files
            broken += links
        elif os.path.exists(match):
            found.append(match)
        else:
            broken.append(_broken_link(match))
    if found or broken:
        return found, broken
    return [], [_nothing(argument, "no audio file matches this pattern", "missing")]


def _empty_directory_problem(directory: str) -> str:
    """A folder named like a file (``x.wav``) is said to be one: the user expected a file."""
    if Path(directory).suffix.lower() in AUDIO_EXTENSIONS:
        return f"is a directory with no audio files ({_SEARCHED})"
    return f"no audio files found in this directory ({_SEARCHED})"


def _nothing(argument: str, problem: str, kind: str = "empty") -> Failure:
    return Failure(argument, AudioError(argument, problem, kind))


def _broken_link(path: str) -> Failure:
    return _nothing(
        path, f"broken symbolic link: its target {os.readlink(path)!r} does not exist", "missing"
    )


def _audio_files(directory: str) -> tuple[list[str], list[Failure]]:
    """The audio files in ``directory`` and below, sorted, and its broken links named like
    audio files, each as a `Failure`."""
    files, broken = [], []
    for path in sorted(Path(directory).rglob("*")):
        if path.suffix.lower() not in AUDIO_EXTENSIONS:
            continue
        if path.is_file():
            files.append(str(path))
        elif path.is_symlink() and not path.exists():
            broken.append(_broken_link(str(path)))
    return files, broken


def check_not_an_input(path: Path, inputs: Iterable[str]) -> None:
    """Refuse an output file that is one of the inputs (by its resolved path, or the same file
    under another name), before any work starts: writing the results there would replace it."""
    target = os.path.realpath(path)
    existing = os.stat(path) if path.exists() else None
    for source in inputs:
        same = os.path.realpath(source) == target
        if not same and existing is not None:
            try:
                same = os.path.samestat(existing, os.stat(source))
            except OSError:
                continue  # an input that cannot be read is reported when it is predicted
        if same:
            raise OutputError(
                f"{path}: is one of the inputs ({source}); writing there would overwrite it, "
                "so give another file to write to"
            )


def check_output_path(path: Path) -> None:
    """Refuse an output file that cannot be written, naming it, before any work starts.

    A temporary file is created and removed in the target folder: that one test sees
    permissions, read-only file systems and special folders alike.
    """
    parent = path.parent
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name to write to")
    if not parent.is_dir():
        problem = "is not a directory" if parent.exists() else "does not exist"
        raise OutputError(f"{path}: cannot write here: the folder {parent} {problem}")
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as error:
        raise OutputError(f"{path}: cannot write in {parent} ({error.strerror})") from None


def write_predictions(text: str, path: Path) -> None:
    """Write formatted predictions atomically: readers never see a partial file."""
    try:
        write_atomic(path, text)
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror})") from None


def format_predictions(
    predictions: Sequence[Prediction], output_format: str, model: str = "the model"
) -> str:
    """Render predictions as ``table`` (aligned text), ``json``, ``csv`` or ``challenge`` (the
    MSP-Podcast challenge's submission file; ``model`` names the model in its refusals).

    Table and CSV have one row per input (empty ``window`` column: the whole recording, for a
    segmented one the duration-weighted mean of its segments) followed, for a recording cut
    into windows or speech segments, by one row per segment numbered from 1 with its start and
    end. JSON is a list of `Prediction.to_dict`, strict (never NaN or Infinity).
    """
    if output_format == "challenge":
        return submission_text(predictions, model)
    if output_format == "json":
        items = [prediction.to_dict() for prediction in predictions]
        return json.dumps(items, indent=2, allow_nan=False) + "\n"
    rows = _rows(predictions)
    if output_format == "csv":
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return buffer.getvalue()
    if output_format == "table":
        return _table(rows)
    raise OutputError(f"unknown output format {output_format!r}; use {', '.join(OUTPUT_FORMATS)}")


def _rows(predictions: Sequence[Prediction]) -> list[list[str]]:
    """Header plus one row per input and per segment: source, window, start, end, label, p…,
    then the input's attribute values (segment rows leave those cells empty)."""
    labels = list(predictions[0].probabilities) if predictions else []
    attributes = list(predictions[0].attributes or {}) if predictions else []
    rows = [["source", "window", "start", "end", "label", *labels, *attributes]]
    for prediction in predictions:
        rows.append(
            _row(prediction.source, "", 0.0, prediction.duration, prediction.label, prediction)
        )
        for number, window in enumerate(prediction.windows, start=1):
            rows.append(
                _row(prediction.source, str(number), window.start, window.end, window.label, window)
                + [""] * len(attributes)
            )
    return rows


def _row(
    source: str,
    window: str,
    start: float,
    end: float,
    label: str,
    scored: Prediction | WindowPrediction,
) -> list[str]:
    scores = [f"{p:.4f}" for p in scored.probabilities.values()]
    if isinstance(scored, Prediction) and scored.attributes is not None:
        scores += [f"{value:.4f}" for value in scored.attributes.values()]
    return [source, window, f"{start:.2f}", f"{end:.2f}", label, *scores]


def _table(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; text left-aligned, numbers right-aligned."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.ljust(width) if column in (0, 4) else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"
