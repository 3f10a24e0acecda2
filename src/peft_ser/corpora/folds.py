"""Fold rules shared by the corpora: by session, by contiguous speaker blocks, by official split.

Every rule is deterministic (no shuffling): the paper's folds are defined by order, and a
re-run must give byte-identical ``folds.json``. Keys keep manifest order inside each split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence

import numpy as np

from peft_ser.corpora.base import CorpusError, natural_key
from peft_ser.manifest import Fold, Utterance


def _fold(
    name: str,
    utterances: Sequence[Utterance],
    group: Callable[[Utterance], str],
    splits: dict[str, str],
) -> Fold:
    """Build a fold from a mapping of group value (session, speaker, split) to split name."""
    keys: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for utterance in utterances:
        split = splits.get(group(utterance))
        if split is not None:
            keys[split].append(utterance.key)
    return Fold(name, keys["train"], keys["dev"], keys["test"])


def _require(groups: Sequence[str], minimum: int, what: str) -> None:
    """Each fold needs non-empty train, dev and test groups; say so instead of failing later."""
    if len(groups) < minimum:
        raise CorpusError(f"this protocol needs at least {minimum} {what}, found {len(groups)}")


def _sessions(utterances: Sequence[Utterance]) -> list[str]:
    sessions = sorted({u.session for u in utterances}, key=natural_key)
    _require(sessions, 3, "sessions")
    return sessions


def session_folds(utterances: Sequence[Utterance]) -> list[Fold]:
    """The paper's rule (IEMOCAP, MSP-IMPROV): one fold per session in order; the session is
    test, the last of the remaining sessions is dev, the others train."""
    sessions = _sessions(utterances)
    folds = []
    for index, test in enumerate(sessions, start=1):
        rest = [s for s in sessions if s != test]
        splits = {s: "train" for s in rest[:-1]} | {rest[-1]: "dev", test: "test"}
        folds.append(_fold(f"fold{index}", utterances, lambda u: u.session, splits))
    return folds


def session_folds_speaker_dev(utterances: Sequence[Utterance]) -> list[Fold]:
    """Leave one session out, with dev carved from the training speakers: of the remaining
    sessions (in order), the female speaker(s) of the first and the male speaker(s) of the
    last form the dev set, so dev is gender-balanced and every session still trains."""
    sessions = _sessions(utterances)
    speakers = {(u.session, u.gender, u.speaker) for u in utterances}
    folds = []
    for index, test in enumerate(sessions, start=1):
        rest = [s for s in sessions if s != test]
        dev_groups = {(rest[0], "F"), (rest[-1], "M")}
        splits = {}
        for session, gender, speaker in speakers:
            if session == test:
                splits[speaker] = "test"
            else:
                splits[speaker] = "dev" if (session, gender) in dev_groups else "train"
        folds.append(_fold(f"fold{index}", utterances, lambda u: u.speaker, splits))
    return folds


def speaker_block_folds(utterances: Sequence[Utterance], n_folds: int = 5) -> list[Fold]:
    """The paper's CREMA-D rule, also used for RAVDESS and EmoDB: the sorted speakers are cut
    into ``n_folds`` contiguous test blocks (``numpy.array_split`` sizes, e.g. 19,18,18,18,18
    for 91); of each fold's remaining speakers, in order, the last ceil(n/5) are dev."""
    speakers = sorted({u.speaker for u in utterances}, key=natural_key)
    _require(speakers, n_folds + 2, "speakers")
    folds = []
    for index, block in enumerate(np.array_split(np.array(speakers, dtype=object), n_folds), 1):
        test = set(block.tolist())
        rest = [s for s in speakers if s not in test]
        n_dev = math.ceil(len(rest) / 5)
        splits = {s: "train" for s in rest[: len(rest) - n_dev]}
        splits |= {s: "dev" for s in rest[len(rest) - n_dev :]} | {s: "test" for s in test}
        folds.append(_fold(f"fold{index}", utterances, lambda u: u.speaker, splits))
    return folds


def official_split(
    train: Collection[str], dev: Collection[str], test: Collection[str]
) -> Callable[[Sequence[Utterance]], list[Fold]]:
    """A single fold from the corpus's own split names (stored in ``Utterance.session``)."""

    def rule(utterances: Sequence[Utterance]) -> list[Fold]:
        splits = {s: "train" for s in train} | {s: "dev" for s in dev} | {s: "test" for s in test}
        return [_fold("official", utterances, lambda u: u.session, splits)]

    return rule
