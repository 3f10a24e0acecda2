"""Decoding a prepared corpus's audio once into the cache that training reads.

The default folder, ``<prepared>/audio_cache`` (`PREPARED_FOLDER`), is the one a training run
over the corpus reads before it decodes anything (`peft_ser.data.audio_cache.RunAudio`), so the
run's first epoch decodes nothing; entries are named by each file's path, size and modification
time, so a file changed since is decoded again. A cache elsewhere (``--cache-dir``) or at another
rate is for other readers: training reads the 16-kHz entries of the default folder only.

Each cache entry is written whole (a temporary file renamed into place), so a run that ends
early, on a full disk or a kill, leaves only complete entries; the next run decodes the rest.
A full disk, a read-only cache folder and a ``--cache-dir`` that is a file are one-line
`CorpusError`s naming the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from peft_ser.corpora import base
from peft_ser.corpora.base import CorpusError, Problem
from peft_ser.corpora.output import disk_errors
from peft_ser.corpora.registry import load_prepared
from peft_ser.data.audio import MAX_RATE, MIN_RATE, AudioError
from peft_ser.data.audio_cache import PREPARED_FOLDER, AudioCache
from peft_ser.utils.progress import progress_bar


@dataclass(frozen=True)
class PreprocessResult:
    """What `preprocess_corpus` did: files decoded now, files already cached, failures."""

    computed: int
    cached: int
    failed: list[Problem]


def preprocess_corpus(
    prepared_dir: str | Path,
    cache_dir: str | Path | None = None,
    sample_rate: int = 16000,
    *,
    verbose: bool = False,
) -> PreprocessResult:
    """Fill the audio cache (default ``<prepared_dir>/audio_cache``, which training reads) with
    every manifest utterance decoded to mono ``sample_rate``; fresh entries are kept, changed
    files redone. Rates outside `MIN_RATE`–`MAX_RATE` are refused: no speech model uses them."""
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise CorpusError(
            f"--sample-rate {sample_rate}: give a rate from {MIN_RATE} to {MAX_RATE} Hz"
        )
    prepared_dir = Path(prepared_dir)
    manifest = load_prepared(prepared_dir).manifest
    directory = Path(cache_dir or prepared_dir / PREPARED_FOLDER)
    if directory.exists() and not directory.is_dir():
        raise CorpusError(f"--cache-dir {directory} is a file, not a folder")
    cache = AudioCache(directory, sample_rate)
    computed, failed = 0, []
    kept = "the entries written so far are whole and kept: run preprocess again to go on"
    with disk_errors(directory, "write the audio cache", kept):
        for utterance in progress_bar(
            verbose, iterable=manifest, desc="preprocessing", unit="file"
        ):
            try:
                computed += cache.ensure(utterance.path, utterance.start, utterance.end)
            except AudioError as error:
                reason = base.audio_reason(error.kind)
                failed.append(Problem(utterance.key, utterance.path, reason, error.problem))
    return PreprocessResult(computed, len(manifest) - computed - len(failed), failed)
