"""Decoding a prepared corpus's audio once into the cache that training reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from peft_ser.audio import AudioCache, AudioError
from peft_ser.corpora import base
from peft_ser.corpora.base import Problem
from peft_ser.manifest import load_prepared
from peft_ser.progress import progress_bar


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
    """Fill the audio cache (default ``<prepared_dir>/audio_cache``) with every manifest
    utterance decoded to mono ``sample_rate``; fresh entries are kept, changed files redone."""
    prepared_dir = Path(prepared_dir)
    cache = AudioCache(cache_dir or prepared_dir / "audio_cache", sample_rate)
    manifest = load_prepared(prepared_dir).manifest
    computed, failed = 0, []
    for utterance in progress_bar(verbose, iterable=manifest, desc="preprocessing", unit="file"):
        try:
            computed += cache.ensure(utterance.path, utterance.start, utterance.end)
        except AudioError as error:
            reason = base.audio_reason(error.kind)
            failed.append(Problem(utterance.key, utterance.path, reason, error.problem))
    return PreprocessResult(computed, len(manifest) - computed - len(failed), failed)
