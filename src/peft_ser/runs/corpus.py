"""Which prepared corpus and folds a run uses."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from peft_ser.config import DataConfig, FoldSelector
from peft_ser.corpora.registry import load_prepared
from peft_ser.data.manifest import MANIFEST_FILE, Fold, PreparedCorpus
from peft_ser.utils.errors import UserError

log = logging.getLogger(__name__)


def resolve_corpus(data: DataConfig) -> PreparedCorpus:
    """The prepared corpus ``data`` names; prepares it from ``corpus_dir`` when not yet done."""
    direct = Path(data.corpus)
    if (direct / MANIFEST_FILE).is_file():
        return load_prepared(direct)
    prepared_dir = data.prepared_dir or Path("prepared") / data.corpus
    if (prepared_dir / MANIFEST_FILE).is_file():
        return load_prepared(prepared_dir)
    if data.corpus_dir is not None:
        from peft_ser.corpora.prepare import prepare_corpus

        log.info("preparing %s from %s into %s", data.corpus, data.corpus_dir, prepared_dir)
        return prepare_corpus(data.corpus, data.corpus_dir, prepared_dir)
    if direct.is_dir():
        return load_prepared(direct)  # refuses it, naming what is missing and how to prepare it
    raise UserError(
        f"data.corpus: no prepared corpus at {direct} or {prepared_dir}; prepare one with "
        f"`peft-ser prepare <corpus> --root <corpus folder> --out {prepared_dir}`, "
        "or set data.corpus_dir to the raw corpus folder"
    )


def select_folds(folds: Sequence[Fold], wanted: Sequence[FoldSelector] | None) -> list[Fold]:
    """Folds by 1-based position or by name; an unknown one is an error listing the choices."""
    if wanted is None:
        return list(folds)
    by_name = {fold.name: fold for fold in folds}
    chosen = []
    for selector in wanted:
        if isinstance(selector, int) and 1 <= selector <= len(folds):
            chosen.append(folds[selector - 1])
        elif isinstance(selector, str) and selector in by_name:
            chosen.append(by_name[selector])
        else:
            raise UserError(
                f"data.folds: no fold {selector!r}; allowed: 1..{len(folds)} "
                f"or one of {list(by_name)}"
            )
        if chosen[-1].name in {fold.name for fold in chosen[:-1]}:
            raise UserError(
                f"data.folds: fold {chosen[-1].name!r} is chosen twice (as {selector!r}); "
                "each fold is trained and pooled once"
            )
    return chosen
