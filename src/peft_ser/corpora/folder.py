"""A folder corpus: each sub-folder of the root is a label and holds that label's clips.

The ImageFolder / audiofolder convention: ``root/Angry/s01_take1.wav``, found at any depth
below the label folder (``root/Angry/s01/take1.wav`` too). Speakers come from the path below
the label folder through a user-given regular expression with a named group ``speaker`` (and
optional ``gender`` and ``session`` groups), e.g. ``^(?P<speaker>[^_]+)_`` for ``s01_take1.wav``
or ``^(?P<speaker>[^/]+)/`` for ``s01/take1.wav``. A file the expression does not match is a
malformed row; audio lying directly in the root has no label and is reported as unlabelled.
Hidden files and folders (``.name``) are skipped. A folder holds no attribute values, so it
is prepared for class labels only; clips with arousal, valence or dominance values go in a
table (`peft_ser.corpora.table`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from peft_ser.corpora.base import (
    MALFORMED_ROW,
    CorpusError,
    Entry,
    Problem,
    Scan,
    gender_letter,
    is_audio_file,
)
from peft_ser.corpora.own import UNKNOWN_SPEAKER, OwnDataOptions, OwnScan, prepare_own
from peft_ser.manifest import PreparedCorpus


def prepare_folder(
    root: str | Path,
    out: str | Path | None = None,
    *,
    speaker_pattern: str | None = None,
    options: OwnDataOptions | None = None,
    name: str | None = None,
    verbose: bool = False,
) -> PreparedCorpus:
    """Prepare the clips under ``root`` (one sub-folder per label) into ``out`` (default
    ``prepared/<name>``; ``name`` defaults to the root folder's name).

    ``speaker_pattern`` is the regular expression that finds the speaker in each clip's path
    below its label folder (see the module docstring); ``options`` chooses labels and folds.
    Raises `CorpusError` for targets other than ``categorical``, a root that is missing or has
    no label folders, a pattern that does not compile or has no ``speaker`` group, or nothing
    usable left.
    """
    options = options or OwnDataOptions()
    if options.targets != "categorical":
        raise CorpusError(
            f"--targets {options.targets}: the folder layout has no attribute values (its "
            "labels are folder names); list the clips with arousal, valence or dominance "
            "columns in a table and run prepare table --manifest <table> --targets attributes"
        )
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        problem = "is a file, not a folder" if path.exists() else "does not exist"
        raise CorpusError(f"corpus root {path} {problem}")
    pattern = compile_speaker_pattern(speaker_pattern) if speaker_pattern else None
    own = scan_folder(path, pattern)
    return prepare_own(name or path.name, path, own, out, options, verbose=verbose)


def compile_speaker_pattern(text: str) -> re.Pattern[str]:
    """``text`` compiled; it must have a named group ``speaker``."""
    try:
        pattern = re.compile(text)
    except re.error as error:
        problem = f"is not a regular expression ({error})"
        raise CorpusError(f"--speaker-pattern {text!r} {problem}") from None
    if "speaker" not in pattern.groupindex:
        raise CorpusError(
            f"--speaker-pattern {text!r} has no group named speaker: write it as "
            "(?P<speaker>...), e.g. '^(?P<speaker>[^_]+)_'"
        )
    return pattern


def _visible(name: str) -> bool:
    return not name.startswith(".")


def scan_folder(root: Path, pattern: re.Pattern[str] | None) -> OwnScan:
    """Every audio file below the label folders of ``root``, with its speaker when
    ``pattern`` finds one; audio directly in ``root`` counts as unlabelled."""
    labels = sorted(e.name for e in os.scandir(root) if e.is_dir() and _visible(e.name))
    if not labels:
        raise CorpusError(
            f"{root} has no sub-folders: a folder corpus keeps each label's clips in a "
            "sub-folder named after the label (root/Angry/clip.wav)"
        )
    audio = {os.path.join(root, n) for n in os.listdir(root) if is_audio_file(n)}
    scan = Scan([], audio)
    hint = "--speaker-pattern '^(?P<speaker>[^_]+)_' (a regular expression on the file path)"
    own = OwnScan(scan, pattern is not None, hint)
    for label in labels:
        for relative in _audio_below(root / label):
            path = os.path.join(root, label, relative)
            entry = _entry(f"{label}/{relative}", path, label, relative, pattern)
            if isinstance(entry, Problem):
                scan.problems.append(entry)
            else:
                scan.entries.append(entry)
                scan.audio.add(path)
    return own


def _audio_below(folder: Path) -> list[str]:
    """Audio files at any depth below ``folder``, as sorted ``/``-separated relative paths."""
    found = []
    for current, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if _visible(name)]
        relative = os.path.relpath(current, folder)
        for name in files:
            if is_audio_file(name):
                found.append(name if relative == "." else f"{relative}/{name}".replace(os.sep, "/"))
    return sorted(found)


def _entry(
    key: str, path: str, label: str, relative: str, pattern: re.Pattern[str] | None
) -> Entry | Problem:
    """The clip's entry, or the problem that its path does not give a speaker."""
    if pattern is None:
        return Entry(key, UNKNOWN_SPEAKER, "U", path, label)
    match = pattern.search(relative)
    if match is None or not match.group("speaker"):
        detail = f"{relative!r} does not match --speaker-pattern {pattern.pattern!r}"
        return Problem(key, path, MALFORMED_ROW, detail)
    found = {name: match.group(name) or "" for name in pattern.groupindex}
    gender = gender_letter(found.get("gender", ""))
    return Entry(key, found["speaker"], gender, path, label, found.get("session", ""))
