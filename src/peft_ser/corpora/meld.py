"""MELD: utterances of the Friends TV series, with official train/dev/test splits.

``MELD.Raw/`` holds the label tables ``train_sent_emo.csv``, ``dev_sent_emo.csv`` and
``test_sent_emo.csv`` (columns ``Sr No., Utterance, Speaker, Emotion, Sentiment,
Dialogue_ID, Utterance_ID, Season, Episode, StartTime, EndTime``) and, unpacked from
``train.tar.gz``, ``dev.tar.gz`` and ``test.tar.gz``, one video clip per row,
``dia<Dialogue_ID>_utt<Utterance_ID>.mp4``, in ``train_splits/``, ``dev_splits_complete/``
and ``output_repeated_splits_test/`` (directly in the root or one folder below it). The
audio track may already be extracted, as the original PEFT-SER scripts expect, to
``<split folder>/waves/dia<D>_utt<U>.wav`` (or flac, or next to the mp4): such files are
used as they are. Otherwise each clip's audio is decoded once with PyAV (which ships its own
FFmpeg) to 16-kHz mono WAV under ``<out>/audio/<split>/``, and later runs reuse what is
newer than its clip.

Known defects of the release: ``dev`` row ``dia110_utt7`` has no clip (missing_audio), the
train clip ``dia125_utt3.mp4`` does not decode (unreadable_audio), and some clips have no
row (``final_videos_testdia101_utt0.mp4``: unlabelled_audio). Speakers are character names
and recur across the official splits, so the protocol is not speaker-independent; the
leakage check says so. Gender is known for the six main characters only.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

from peft_ser.corpora.base import (
    MALFORMED_ROW,
    Corpus,
    Entry,
    LabelScheme,
    Problem,
    Protocol,
    Scan,
    audio_reason,
    require_columns,
    stem,
)
from peft_ser.corpora.folds import official_split
from peft_ser.data.audio import SAMPLE_RATE, AudioError
from peft_ser.utils.fileio import write_atomic_with
from peft_ser.utils.progress import progress_bar

if TYPE_CHECKING:
    from av.container import InputContainer

SPLITS = {
    "train": ("train_sent_emo.csv", "train_splits"),
    "dev": ("dev_sent_emo.csv", "dev_splits_complete"),
    "test": ("test_sent_emo.csv", "output_repeated_splits_test"),
}
"""Official split → (label table, clip folder)."""
_COLUMNS = ("Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")
_GENDERS = {"Chandler": "M", "Joey": "M", "Ross": "M", "Monica": "F", "Phoebe": "F", "Rachel": "F"}
_EXTRACTED = ("waves/{}.wav", "waves/{}.flac", "{}.wav", "{}.flac")
"""Where an already extracted audio track may lie in a clip folder, in order of preference."""
VIDEO_SUFFIX = ".mp4"
_DECODE_THREADS = 4


def _looks_like(root: Path) -> bool:
    return any((root / table).is_file() for table, _ in SPLITS.values())


def _clip_folder(root: Path, name: str) -> Path:
    """``root/name``, or ``root/<one folder>/name`` when the archives were unpacked into
    folders of their own."""
    if (root / name).is_dir():
        return root / name
    return next((found for found in sorted(root.glob(f"*/{name}")) if found.is_dir()), root / name)


def _clip_sources(folder: Path) -> dict[str, str]:
    """Clip stem → the file to read it from: an extracted audio track when there is one,
    else the mp4. Hidden files (AppleDouble ``._`` copies) are skipped."""
    names = set(os.listdir(folder)) if folder.is_dir() else set()
    waves = set(os.listdir(folder / "waves")) if (folder / "waves").is_dir() else set()
    available = names | {f"waves/{name}" for name in waves}
    stems = {stem(name) for name in available if not os.path.basename(name).startswith(".")}
    sources = {}
    for clip in stems:
        for candidate in [*(form.format(clip) for form in _EXTRACTED), clip + VIDEO_SUFFIX]:
            if candidate in available:
                sources[clip] = os.path.join(folder, candidate)
                break
    return sources


def scan(root: Path) -> Scan:
    """One entry per row of the three label tables; clips found in the split folders."""
    result = Scan([], set())
    for split, (table, folder_name) in SPLITS.items():
        if not (root / table).is_file():
            continue
        folder = _clip_folder(root, folder_name)
        sources = _clip_sources(folder)
        result.audio |= set(sources.values())
        _read_table(root / table, split, folder, sources, result)
    return result


def _read_table(
    table: Path, split: str, folder: Path, sources: dict[str, str], result: Scan
) -> None:
    # The Utterance text is not used; a stray byte in it must not stop the table.
    with open(table, newline="", encoding="utf-8-sig", errors="replace") as handle:
        reader = csv.DictReader(handle)
        require_columns(table, reader.fieldnames, _COLUMNS)
        for row in reader:
            dialogue, utterance = (row[name].strip() for name in ("Dialogue_ID", "Utterance_ID"))
            if not (dialogue.isdigit() and utterance.isdigit()):
                detail = f"line {reader.line_num}: Dialogue_ID/Utterance_ID are not numbers"
                result.problems.append(Problem(f"{split}_?", str(table), MALFORMED_ROW, detail))
                continue
            clip = f"dia{int(dialogue)}_utt{int(utterance)}"
            path = sources.get(clip, os.path.join(folder, clip + VIDEO_SUFFIX))
            speaker = row["Speaker"].strip() or "Unknown"
            label = row["Emotion"].strip().lower()
            gender = _GENDERS.get(speaker, "U")
            result.entries.append(Entry(f"{split}_{clip}", speaker, gender, path, label, split))


def extract_audio_tracks(scan: Scan, out: Path, verbose: bool) -> Scan:
    """``scan`` with every mp4 clip a row uses replaced by its audio track, decoded into
    ``<out>/audio/<split>/<clip>.wav`` (kept from an earlier run when newer than the clip);
    a clip that does not decode is reported with its reason and its rows left out."""
    videos = {
        e.path: e for e in scan.entries if e.path.endswith(VIDEO_SUFFIX) and e.path in scan.audio
    }
    folder = out.resolve() / "audio"
    targets = {
        path: str(folder / entry.session / f"{stem(path)}.wav") for path, entry in videos.items()
    }
    decoded = _decode_all(list(targets.items()), verbose)
    failures = {source: error for source, error in decoded if error is not None}
    problems = [
        Problem(videos[source].key, source, audio_reason(error.kind), error.problem)
        for source, error in failures.items()
    ]
    entries = [
        replace(entry, path=targets[entry.path]) if entry.path in targets else entry
        for entry in scan.entries
        if entry.path not in failures
    ]
    extracted = {target for source, target in targets.items() if source not in failures}
    return Scan(entries, (scan.audio - targets.keys()) | extracted, scan.problems + problems)


def _decode_all(
    jobs: Sequence[tuple[str, str]], verbose: bool
) -> list[tuple[str, AudioError | None]]:
    """Decode each ``(source, target)`` pair, a few at a time: FFmpeg releases the GIL."""

    def run(job: tuple[str, str]) -> tuple[str, AudioError | None]:
        source, target = job
        try:
            if not _fresh(target, source):
                decode_audio_track(source, target)
        except AudioError as error:
            return source, error
        return source, None

    with (
        ThreadPoolExecutor(_DECODE_THREADS) as pool,
        progress_bar(verbose, total=len(jobs), desc="decoding clips", unit="clip") as bar,
    ):
        results = []
        for result in pool.map(run, jobs):
            results.append(result)
            bar.update()
    return results


def _fresh(target: str, source: str) -> bool:
    return os.path.isfile(target) and os.path.getmtime(target) >= os.path.getmtime(source)


def decode_audio_track(source: str | Path, target: str | Path) -> None:
    """Write the first audio track of ``source`` (any container FFmpeg reads: mp4, mkv,
    webm, ...) to ``target`` as 16-kHz mono 16-bit WAV, atomically.

    Raises `AudioError` (kinds as for audio files) when ``source`` is missing, does not
    decode, has no audio track, or holds no or non-finite samples.
    """
    import av

    try:
        with av.open(str(source)) as container:
            if not container.streams.audio:
                raise AudioError(source, "has no audio track")
            samples = _mono_16k(container)
    except FileNotFoundError as error:
        raise AudioError(source, "file does not exist", "missing") from error
    except (av.FFmpegError, OSError) as error:
        raise AudioError(source, f"cannot decode its audio track ({error})") from error
    if samples.size == 0:
        raise AudioError(source, "its audio track holds no samples", "empty")
    non_finite = int(samples.size - np.count_nonzero(np.isfinite(samples)))
    if non_finite:
        problem = f"{non_finite} of {samples.size} samples are not finite (NaN or ±inf)"
        raise AudioError(source, problem, "non_finite")
    write_atomic_with(
        target, lambda temporary: sf.write(temporary, samples, SAMPLE_RATE, "PCM_16", format="WAV")
    )


def _mono_16k(container: InputContainer) -> np.ndarray:
    """The first audio track of an open PyAV container, down-mixed and resampled by FFmpeg."""
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    chunks = [
        frame.to_ndarray().reshape(-1)
        for decoded in container.decode(container.streams.audio[0])
        for frame in resampler.resample(decoded)
    ]
    chunks += [frame.to_ndarray().reshape(-1) for frame in resampler.resample(None)]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


CORPUS = Corpus(
    name="meld",
    title="MELD",
    layout=(
        "train_sent_emo.csv, dev_sent_emo.csv, test_sent_emo.csv and the clips "
        "train_splits/, dev_splits_complete/, output_repeated_splits_test/ "
        "(dia<D>_utt<U>.mp4, or audio already extracted to <folder>/waves/dia<D>_utt<U>.wav)"
    ),
    looks_like=_looks_like,
    scan=scan,
    labels=LabelScheme(
        full={
            "neutral": "Neutral",
            "anger": "Angry",
            "sadness": "Sad",
            "joy": "Happy",
            "surprise": "Surprised",
            "fear": "Fearful",
            "disgust": "Disgusted",
        },
        paper4={"neutral": "Neutral", "anger": "Angry", "sadness": "Sad", "joy": "Happy"},
    ),
    protocols={
        "paper": Protocol(
            "official split: train / dev / test (speakers recur across them)",
            1,
            official_split(("train",), ("dev",), ("test",)),
            speaker_independent=False,
        ),
    },
    top_dirs=("MELD.Raw", "MELD"),
    materialize=extract_audio_tracks,
)
