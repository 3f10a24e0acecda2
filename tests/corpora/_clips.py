"""Clips and tables for the own-data corpora tests: tones of any length, defective files, and
the same rows written as CSV, TSV, JSON Lines or Parquet."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import _tones
import numpy as np
import soundfile as sf

from peft_ser.data.manifest import PreparedCorpus

FORMATS = ("csv", "tsv", "jsonl", "parquet")


def tone(path: Path, seconds: float = 0.3, rate: int = 16000, hz: float = 220.0) -> Path:
    """Write ``seconds`` of a tone as 16-bit WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _tones.tone(seconds, hz, rate=rate, dtype=np.float64), rate, subtype="PCM_16")
    return path


def ramp(path: Path, seconds: float, rate: int = 16000) -> Path:
    """Write a float WAV whose sample ``i`` is ``i / (seconds * rate)``: any segment's content
    says where in the file it came from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = round(seconds * rate)
    sf.write(path, (np.arange(frames) / frames).astype(np.float32), rate, subtype="FLOAT")
    return path


def non_finite(path: Path) -> Path:
    """A float WAV of 0.3 s holding one NaN."""
    samples = np.full(4800, 0.1, dtype=np.float32)
    samples[100] = np.nan
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, samples, 16000, subtype="FLOAT")
    return path


def junk(path: Path) -> Path:
    """Bytes that are no audio format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF junk" * 20)
    return path


def write_table(path: Path, rows: Sequence[Mapping[str, object]]) -> Path:
    """``rows`` in the format the suffix of ``path`` names; ``None`` is an empty cell (null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = list(dict.fromkeys(name for row in rows for name in row))
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist([dict(row) for row in rows]), path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(dict(row)) + "\n" for row in rows))
    else:
        with open(path, "w", newline="") as handle:
            delimiter = "\t" if path.suffix == ".tsv" else ","
            writer = csv.DictWriter(handle, header, delimiter=delimiter)
            writer.writeheader()
            writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return path


def report(out: Path) -> dict[str, tuple[str, str]]:
    """report.csv as key → (reason, detail)."""
    with open(out / "report.csv", newline="") as handle:
        return {row["key"]: (row["reason"], row["detail"]) for row in csv.DictReader(handle)}


def speakers_by_split(prepared: PreparedCorpus) -> list[tuple[list[str], ...]]:
    """Per fold, the sorted speakers of train, dev and test."""
    speaker = {u.key: u.speaker for u in prepared.manifest}
    return [
        tuple(sorted({speaker[k] for k in keys}) for keys in (f.train, f.dev, f.test))
        for f in prepared.folds
    ]
