"""Fold rules shared by the corpora: by session, by contiguous speaker blocks, by official split.

Every rule is deterministic (no shuffling): the paper's folds are defined by order, and a
re-run must give byte-identical ``folds.json``. Keys keep manifest order inside each split.

A corpus on disk is often incomplete (a RAVDESS download with 4 of the 24 actors, an IEMOCAP
copy with 3 of its 5 sessions). The rules then make as many speaker-independent folds as the
corpus allows and say what changed (`FoldPlan.warnings`); they raise `CorpusError` only when
not even one fold with disjoint train, dev and test speakers can be made. On a complete
corpus they make exactly the paper's folds, without warnings.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence

import numpy as np

from peft_ser.corpora.base import CorpusError, FoldPlan, FoldRule, natural_key
from peft_ser.manifest import SPLITS, Fold, Utterance

MIN_SPEAKERS = 3
"""A fold needs a speaker each for train, dev (where training picks its epoch) and test."""
MIN_SESSIONS = 3
"""Session folds need a session each for train, dev and test."""


def _fold(
    name: str,
    utterances: Sequence[Utterance],
    group: Callable[[Utterance], str],
    splits: dict[str, str],
) -> Fold:
    """Build a fold from a mapping of group value (session, speaker, split) to split name."""
    keys: dict[str, list[str]] = {split: [] for split in SPLITS}
    for utterance in utterances:
        split = splits.get(group(utterance))
        if split is not None:
            keys[split].append(utterance.key)
    return Fold(name, keys["train"], keys["dev"], keys["test"])


def _count(groups: Sequence[str], noun: str) -> str:
    """``3 sessions (Session1, Session2, Session4)``: how many, and which (the first eight)."""
    names = ", ".join(groups[:8]) + (", …" if len(groups) > 8 else "")
    return f"{len(groups)} {noun}{'' if len(groups) == 1 else 's'} ({names})"


def _speakers(utterances: Sequence[Utterance]) -> list[str]:
    return sorted({u.speaker for u in utterances}, key=natural_key)


def _sessions(utterances: Sequence[Utterance]) -> list[str]:
    return sorted({u.session for u in utterances}, key=natural_key)


def _require_speakers(speakers: Sequence[str], context: str) -> None:
    if len(speakers) < MIN_SPEAKERS:
        raise CorpusError(
            f"{context}{_count(speakers, 'speaker')}: a speaker-independent fold needs "
            f"{MIN_SPEAKERS}, one each for train, dev and test"
        )


def _fewer_folds(made: int, wanted: int, groups: Sequence[str], noun: str) -> list[str]:
    if made >= wanted:
        return []
    return [f"only {_count(groups, noun)}, made {made} folds instead of {wanted}"]


def speaker_block_folds(utterances: Sequence[Utterance], n_folds: int) -> FoldPlan:
    """The paper's CREMA-D rule, also used for RAVDESS and EmoDB: the sorted speakers are cut
    into ``n_folds`` contiguous test blocks (``numpy.array_split`` sizes, e.g. 19,18,18,18,18
    for 91); of each fold's remaining speakers, in order, the last ceil(n/5) are dev.

    With fewer speakers than ``n_folds`` (but at least three), every speaker is a test block
    of its own: one fold per speaker, the most speaker-independent folds there can be.
    """
    speakers = _speakers(utterances)
    _require_speakers(speakers, "only ")
    count = min(n_folds, len(speakers))
    folds = []
    for index, block in enumerate(np.array_split(np.array(speakers, dtype=object), count), 1):
        test = set(block.tolist())
        rest = [s for s in speakers if s not in test]
        n_dev = math.ceil(len(rest) / 5)
        splits = {s: "train" for s in rest[: len(rest) - n_dev]}
        splits |= {s: "dev" for s in rest[len(rest) - n_dev :]} | {s: "test" for s in test}
        folds.append(_fold(f"fold{index}", utterances, lambda u: u.speaker, splits))
    return FoldPlan(folds, _fewer_folds(count, n_folds, speakers, "speaker"))


def _speaker_folds_instead(
    utterances: Sequence[Utterance], n_folds: int, sessions: Sequence[str]
) -> FoldPlan:
    """Fewer than three sessions cannot give each fold a train, a dev and a test session;
    folds by speaker still keep every speaker in one split (though the two speakers of a
    dialog may then be split between train and test)."""
    _require_speakers(_speakers(utterances), f"only {_count(sessions, 'session')} and ")
    plan = speaker_block_folds(utterances, n_folds)
    warning = (
        f"only {_count(sessions, 'session')}, too few for session folds (a fold needs a "
        f"train, a dev and a test session): made {len(plan.folds)} folds by speaker instead "
        f"of {n_folds} by session"
    )
    return FoldPlan(plan.folds, [warning])


def session_folds(utterances: Sequence[Utterance], n_folds: int) -> FoldPlan:
    """The paper's rule (IEMOCAP, MSP-IMPROV): one fold per session in order; the session is
    test, the last of the remaining sessions is dev, the others train."""
    sessions = _sessions(utterances)
    if len(sessions) < MIN_SESSIONS:
        return _speaker_folds_instead(utterances, n_folds, sessions)
    folds = []
    for index, test in enumerate(sessions, start=1):
        rest = [s for s in sessions if s != test]
        splits = {s: "train" for s in rest[:-1]} | {rest[-1]: "dev", test: "test"}
        folds.append(_fold(f"fold{index}", utterances, lambda u: u.session, splits))
    return FoldPlan(folds, _fewer_folds(len(folds), n_folds, sessions, "session"))


def session_folds_speaker_dev(utterances: Sequence[Utterance], n_folds: int) -> FoldPlan:
    """Leave one session out, with dev carved from the training speakers: of the remaining
    sessions (in order), the female speaker(s) of the first and the male speaker(s) of the
    last form the dev set, so dev is gender-balanced and every session still trains."""
    sessions = _sessions(utterances)
    if len(sessions) < MIN_SESSIONS:
        return _speaker_folds_instead(utterances, n_folds, sessions)
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
    return FoldPlan(folds, _fewer_folds(len(folds), n_folds, sessions, "session"))


def official_split(train: Collection[str], dev: Collection[str], test: Collection[str]) -> FoldRule:
    """A single fold from the corpus's own split names (stored in ``Utterance.session``);
    the protocol's fold count is one by definition."""

    def rule(utterances: Sequence[Utterance], n_folds: int) -> FoldPlan:
        splits = {s: "train" for s in train} | {s: "dev" for s in dev} | {s: "test" for s in test}
        return FoldPlan([_fold("official", utterances, lambda u: u.session, splits)])

    return rule


def usable_folds(plan: FoldPlan) -> FoldPlan:
    """``plan`` without the folds that have an empty train, dev or test split (training picks
    its epoch on dev and reports test), with a warning for each; `CorpusError` when no fold
    is left."""
    kept, dropped = [], []
    for fold in plan.folds:
        empty = [split for split in SPLITS if not getattr(fold, split)]
        if empty:
            dropped.append(f"{fold.name} has no {' and no '.join(empty)} utterance")
        else:
            kept.append(fold)
    if not kept:
        raise CorpusError("no usable fold: " + "; ".join(dropped or ["the rule made none"]))
    return FoldPlan(kept, plan.warnings + [f"{reason}: left out" for reason in dropped])
