"""A folder corpus: each sub-folder of the root is a label and holds that label's clips.

The ImageFolder / audiofolder convention: ``root/Angry/s01_take1.wav``, found at any depth
below the label folder (``root/Angry/s01/take1.wav`` too). Speakers come from the path below
the label folder through a user-given regular expression with a named group ``speaker`` (and
optional ``gender`` and ``session`` groups), e.g. ``^(?P<speaker>[^_]+)_`` for ``s01_take1.wav``
or ``^(?P<speaker>[^/]+)/`` for ``s01/take1.wav``. A file the expression does not match is a
malformed row; audio lying directly in the root has no label and is reported as unlabelled.
Hidden files and folders (``.name``) are skipped. Symbolic links are resolved so that each
file counts once (see `scan_folder`); a broken link is reported, never skipped. A folder
holds no attribute values, so it is prepared for class labels only; clips with arousal,
valence or dominance values go in a table (`peft_ser.corpora.table`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from peft_ser.corpora.base import (
    DUPLICATE,
    MALFORMED_ROW,
    MISSING_AUDIO,
    UNREADABLE_AUDIO,
    CorpusError,
    Entry,
    Problem,
    Scan,
    gender_letter,
    is_audio_file,
)
from peft_ser.corpora.own import UNKNOWN_SPEAKER, OwnDataOptions, OwnScan, prepare_own
from peft_ser.data.manifest import PreparedCorpus


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
        kind, columns, targets = (
            ("annotator votes", "a votes column", "distribution")
            if options.targets == "distribution"
            else ("attribute values", "arousal, valence or dominance columns", "attributes")
        )
        raise CorpusError(
            f"--targets {options.targets}: the folder layout has no {kind} (its labels are "
            f"folder names); list the clips with {columns} in a table and run prepare table "
            f"--manifest <table> --targets {targets}"
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
    ``pattern`` finds one; audio directly in ``root`` counts as unlabelled.

    Symbolic links are followed, and each folder and file is counted once: a label folder
    that links to another label folder is skipped (with a warning); a file reached by two
    paths is kept under its own path (else under the first) and the other paths are reported
    as duplicates; a broken link is reported as missing audio; a link back into a folder
    being walked (a loop) is not followed again.
    """
    hint = "--speaker-pattern '^(?P<speaker>[^_]+)_' (a regular expression on the file path)"
    own = OwnScan(Scan([], set()), pattern is not None, hint)
    labels = _label_folders(root, own)
    if not labels:
        raise CorpusError(
            f"{root} has no sub-folders: a folder corpus keeps each label's clips in a "
            "sub-folder named after the label (root/Angry/clip.wav)"
        )
    found = [
        (f"{label}/{relative}", os.path.join(root, label, relative), label, relative)
        for label in labels
        for relative in _audio_below(root, label, own)
    ]
    chosen = _one_path_per_file(found)
    for key, path, label, relative in found:
        first = chosen[os.path.realpath(path)]
        if first != key:
            detail = f"the same file as {first} (reached through a symbolic link); counted once"
            own.scan.problems.append(Problem(key, path, DUPLICATE, detail))
            continue
        entry = _entry(key, path, label, relative, pattern)
        if isinstance(entry, Problem):
            own.scan.problems.append(entry)
        else:
            own.scan.entries.append(entry)
            own.scan.audio.add(path)
    twice = len(found) - len(chosen)
    if twice:
        own.notes.append(
            f"{twice} files reached twice through symbolic links were counted once "
            f"(see the duplicate rows of report.csv)"
        )
    return own


def _label_folders(root: Path, own: OwnScan) -> list[str]:
    """The visible sub-folders of ``root``, sorted, each real folder once (a link to a folder
    that is a label folder already is skipped with a warning in ``own.notes``); audio files
    in ``root`` go into ``own.scan.audio`` (unlabelled), broken links into its problems."""
    folders: dict[str, list[str]] = {}
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not _visible(entry.name):
            continue
        if _broken(entry.path, own.scan.problems, entry.name):
            continue
        if entry.is_dir():
            folders.setdefault(os.path.realpath(entry.path), []).append(entry.name)
        elif is_audio_file(entry.name):
            own.scan.audio.add(entry.path)
    labels = []
    for names in folders.values():
        own_name = [name for name in names if not os.path.islink(root / name)]
        label = (own_name or names)[0]
        labels.append(label)
        for other in names:
            if other != label:
                own.notes.append(
                    f"label folder {other} is a symbolic link to the label folder {label}: "
                    f"its clips are counted once, under {label}"
                )
    return sorted(labels)


def _broken(path: str, problems: list[Problem], key: str) -> bool:
    """Whether ``path`` is a broken symbolic link; if so, it is reported in ``problems``."""
    if not os.path.islink(path) or os.path.exists(path):
        return False
    target = os.readlink(path)
    detail = f"broken symbolic link to {target!r}: no file or folder there"
    problems.append(Problem(key, path, MISSING_AUDIO, detail))
    return True


def _audio_below(root: Path, label: str, own: OwnScan) -> list[str]:
    """Audio files at any depth below the label folder, as sorted ``/``-separated paths
    relative to it. Links to folders outside ``root`` are followed (not round a loop); a link
    to a folder inside ``root`` is not (its clips count where they are), with a warning.
    Broken links and unreadable folders go into the problems of ``own``."""
    found = []
    folder = root / label
    problems = own.scan.problems

    def unreadable(error: OSError) -> None:
        detail = f"cannot read the folder ({error.strerror}): its clips are left out"
        key = os.path.relpath(error.filename or folder, root).replace(os.sep, "/")
        problems.append(Problem(key, str(error.filename), UNREADABLE_AUDIO, detail))

    inside = os.path.realpath(root)
    ancestors = {str(folder): {os.path.realpath(folder)}}
    for current, folders, files in os.walk(folder, onerror=unreadable, followlinks=True):
        above = ancestors.pop(current)
        kept = []
        for name in filter(_visible, folders):
            child = os.path.join(current, name)
            real = os.path.realpath(child)
            if real != child and (real in above or _within(real, inside)):
                shown = os.path.relpath(child, root).replace(os.sep, "/")
                own.notes.append(
                    f"{shown} is a symbolic link to {real}, a folder already counted: not followed"
                )
                continue
            ancestors[child] = above | {real}
            kept.append(name)
        folders[:] = kept
        relative = os.path.relpath(current, folder)
        for name in files:
            path = f"{relative}/{name}".replace(os.sep, "/") if relative != "." else name
            full = os.path.join(current, name)
            if not _visible(name) or _broken(full, problems, f"{label}/{path}"):
                continue
            if is_audio_file(name):
                found.append(path)
    return sorted(found)


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _one_path_per_file(found: list[tuple[str, str, str, str]]) -> dict[str, str]:
    """For each real file, the key of the path that counts: the one that is the file's own
    path (reached through no link), else the first."""
    chosen: dict[str, str] = {}
    for key, path, _, _ in found:
        real = os.path.realpath(path)
        if real == path or real not in chosen:
            chosen[real] = key
    return chosen


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
