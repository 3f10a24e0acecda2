"""Emotion corpora as their owners ship them → manifests and the paper's folds."""

from __future__ import annotations

from peft_ser.corpora.base import REASONS, Corpus, CorpusError
from peft_ser.corpora.folder import prepare_folder
from peft_ser.corpora.own import OwnDataOptions
from peft_ser.corpora.prepare import prepare_corpus
from peft_ser.corpora.preprocess import PreprocessResult, preprocess_corpus
from peft_ser.corpora.registry import CORPORA, get_corpus, load_prepared
from peft_ser.corpora.table import prepare_table
from peft_ser.data.manifest import PreparedCorpus

__all__ = [
    "CORPORA",
    "REASONS",
    "Corpus",
    "CorpusError",
    "OwnDataOptions",
    "PreparedCorpus",
    "PreprocessResult",
    "get_corpus",
    "load_prepared",
    "prepare_corpus",
    "prepare_folder",
    "prepare_table",
    "preprocess_corpus",
]
