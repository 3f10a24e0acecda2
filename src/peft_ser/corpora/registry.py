"""Corpus names → corpus modules. Adding a corpus means one module and one line here."""

from __future__ import annotations

from peft_ser.corpora import crema_d, emodb, iemocap, msp_improv, msp_podcast, ravdess
from peft_ser.corpora.base import Corpus, CorpusError

CORPORA: dict[str, Corpus] = {
    module.CORPUS.name: module.CORPUS
    for module in (iemocap, crema_d, msp_improv, msp_podcast, ravdess, emodb)
}


def get_corpus(name: str) -> Corpus:
    """The corpus registered as ``name`` (case-insensitive, ``_`` and ``-`` alike)."""
    normalised = name.lower().replace("_", "-")
    if normalised not in CORPORA:
        raise CorpusError(f"unknown corpus {name!r}; choose one of {sorted(CORPORA)}")
    return CORPORA[normalised]
