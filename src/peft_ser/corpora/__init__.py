"""Emotion corpora as their owners ship them → manifests and the paper's folds."""

from __future__ import annotations

from peft_ser.corpora.base import REASONS, Corpus, CorpusError
from peft_ser.corpora.prepare import PreprocessResult, prepare_corpus, preprocess_corpus
from peft_ser.corpora.registry import CORPORA, get_corpus
from peft_ser.manifest import PreparedCorpus, load_prepared

__all__ = [
    "CORPORA",
    "REASONS",
    "Corpus",
    "CorpusError",
    "PreparedCorpus",
    "PreprocessResult",
    "get_corpus",
    "load_prepared",
    "prepare_corpus",
    "preprocess_corpus",
]
