"""Corpus names → corpus modules. Adding a corpus means one module and one line here."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from peft_ser.corpora import crema_d, emodb, iemocap, meld, msp_improv, msp_podcast, ravdess
from peft_ser.corpora.base import Corpus, CorpusError, is_audio_file
from peft_ser.data.manifest import (
    NotPreparedError,
    PreparedCorpus,
    PreparedCorpusError,
    read_prepared,
)
from peft_ser.utils.errors import suggest

CORPORA: dict[str, Corpus] = {
    module.CORPUS.name: module.CORPUS
    for module in (iemocap, crema_d, msp_improv, msp_podcast, ravdess, emodb, meld)
}
OWN_DATA = ("table", "folder")
"""``prepare`` names for the user's own data: a table of clips, or one folder per label."""


def _spelling(name: str) -> str:
    """A name without case and punctuation: ``CREMA-D``, ``crema_d`` and ``cremad`` agree."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def get_corpus(name: str) -> Corpus:
    """The corpus registered as ``name``, spelled in any case, with or without ``-``/``_``."""
    matches = [corpus for key, corpus in CORPORA.items() if _spelling(key) == _spelling(name)]
    if len(matches) == 1:
        return matches[0]
    names = [*CORPORA, *OWN_DATA]
    raise CorpusError(
        f"unknown corpus {name!r}{suggest(name, names)}; choose one of {', '.join(CORPORA)}, "
        f"or {' or '.join(OWN_DATA)} for your own data"
    )


def own_data_kind(name: str) -> str | None:
    """``table`` or ``folder`` when ``name`` asks for the user's own data (in any case)."""
    return next((kind for kind in OWN_DATA if _spelling(kind) == _spelling(name)), None)


def find_root(corpus: Corpus, root: Path) -> Path | None:
    """``root`` or its sub-folder with the corpus's shipped name, whichever has its layout."""
    for candidate in [root] + [root / top for top in corpus.top_dirs]:
        if candidate.is_dir() and corpus.looks_like(candidate):
            return candidate
    return None


def detect_corpus(folder: Path) -> Corpus | None:
    """The first registered corpus whose layout ``folder`` (or its shipped sub-folder) has."""
    return next((c for c in CORPORA.values() if find_root(c, folder) is not None), None)


def _holds_audio(folder: Path, depth: int = 2) -> bool:
    """Whether audio files lie in ``folder`` or up to ``depth`` levels below it."""
    for current, folders, files in os.walk(folder):
        if any(is_audio_file(name) for name in files):
            return True
        if len(Path(current).relative_to(folder).parts) >= depth:
            folders.clear()
    return False


def prepare_hint(folder: Path) -> str:
    """How to make a prepared corpus of ``folder``, as a working ``peft-ser prepare`` command:
    naming the corpus when ``folder`` has a known layout, with ``<corpus>`` when it merely
    holds audio files, and as the output folder otherwise."""
    names = f"{', '.join(CORPORA)}, or folder for your own clips in one sub-folder per label"
    corpus = detect_corpus(folder)
    quoted = shlex.quote(str(folder))
    if corpus is not None:
        command = f"peft-ser prepare {corpus.name} --root {quoted} --out prepared/{corpus.name}"
        return f"it looks like raw {corpus.title}: prepare it first with `{command}`"
    if _holds_audio(folder):
        command = f"peft-ser prepare <corpus> --root {quoted} --out prepared/<corpus>"
        return f"it holds audio files: prepare it first with `{command}` (<corpus>: {names})"
    command = f"peft-ser prepare <corpus> --root <corpus folder> --out {quoted}"
    return f"write one with `{command}` (<corpus>: {names})"


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


def load_prepared(directory: str | Path) -> PreparedCorpus:
    """A prepared corpus directory, read by `read_prepared`; a folder that holds none is
    refused with the ``peft-ser prepare`` command that makes one (naming a raw corpus)."""
    try:
        return read_prepared(directory)
    except NotPreparedError as error:
        raise PreparedCorpusError(f"{error}; {prepare_hint(error.folder)}") from None
