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


def describe_corpora() -> str:
    """One paragraph per corpus: name, expected layout, label sets and protocols (for --help)."""
    paragraphs = []
    for corpus in CORPORA.values():
        label_sets = ", ".join(corpus.labels.sets)
        protocols = "; ".join(f"{name}: {p.description}" for name, p in corpus.protocols.items())
        paragraphs.append(
            f"{corpus.name} ({corpus.title}): root holds {corpus.layout}. "
            f"Label sets: {label_sets}. Protocols: {protocols}."
        )
    return "\n\n".join(paragraphs)
