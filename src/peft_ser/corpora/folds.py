"""Fold rules shared by the corpora: by session, by contiguous speaker blocks, by official split,
as given by the user's own table, or generated (speaker-independent k-fold); and the check
that tells which speakers a fold's splits share; and the session protocols that IEMOCAP and
MSP-IMPROV both offer, each described once next to its rule.

Every rule is deterministic: the paper's folds are defined by order (no shuffling), the
generated ones by a seed, and a re-run must give byte-identical ``folds.json``. Keys keep
manifest order inside each split.

A corpus on disk is often incomplete (a RAVDESS download with 4 of the 24 actors, an IEMOCAP
copy with 3 of its 5 sessions). The rules then make as many speaker-independent folds as the
corpus allows and say what changed (`FoldPlan.warnings`); they raise `CorpusError` only when
not even one fold with disjoint train, dev and test speakers can be made. On a complete
corpus they make exactly the paper's folds, without warnings.

Utterances kept for their annotator votes alone (``prepare --targets distribution``, label
`VOTES_ONLY`) never decide a fold: the sessions, speakers, fold numbers and strata come from
the labelled utterances (`_deciding`), and a vote-only utterance joins the split its session,
speaker or split name is in (none, when that group has no labelled utterance, and none under
utterance-level folds). The labelled utterances' folds are therefore those of a categorical
preparation of the same corpus.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

import numpy as np

from peft_ser.corpora.base import CorpusError, FoldPlan, FoldRule, Protocol, natural_key
from peft_ser.data.manifest import SPLITS, Fold, Utterance
from peft_ser.data.vote_columns import VOTES_ONLY

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


def _deciding(utterances: Sequence[Utterance]) -> list[Utterance]:
    """The utterances whose groups make the folds: all but those kept for their votes alone."""
    return [u for u in utterances if u.label != VOTES_ONLY]


def _speakers(utterances: Sequence[Utterance]) -> list[str]:
    return sorted({u.speaker for u in _deciding(utterances)}, key=natural_key)


def _sessions(utterances: Sequence[Utterance]) -> list[str]:
    return sorted({u.session for u in _deciding(utterances)}, key=natural_key)


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
    speakers = {(u.session, u.gender, u.speaker) for u in _deciding(utterances)}
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


def session_protocol(sessions: int) -> Protocol:
    """The paper's protocol of a corpus recorded in ``sessions`` sessions (`session_folds`)."""
    return Protocol(
        f"{sessions} folds: one session test, the last remaining dev", sessions, session_folds
    )


def session_speaker_dev_protocol(sessions: int) -> Protocol:
    """Leave one session out with gender-balanced dev speakers (`session_folds_speaker_dev`),
    for a corpus recorded in ``sessions`` sessions."""
    return Protocol(
        "one session test; dev = F of the first and M of the last remaining sessions",
        sessions,
        session_folds_speaker_dev,
    )


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


def given_split(splits: Mapping[str, str]) -> FoldRule:
    """One fold ``given`` from a train/dev/test name per utterance key (a table's ``split``
    column); utterances without one stay in the manifest, in no fold."""

    def rule(utterances: Sequence[Utterance], n_folds: int) -> FoldPlan:
        return FoldPlan([_fold("given", utterances, lambda u: u.key, dict(splits))])

    return rule


def given_folds(numbers: Mapping[str, str]) -> FoldRule:
    """Folds from a fold number per utterance key (a table's ``fold`` column): fold ``n`` tests
    on the utterances numbered ``n``, picks its epoch on the next number (the first after the
    last) and trains on the others, so every number is test once and dev once."""

    def rule(utterances: Sequence[Utterance], n_folds: int) -> FoldPlan:
        present = {u.key for u in _deciding(utterances)}
        values = sorted({numbers[k] for k in present if k in numbers}, key=natural_key)
        if len(values) < MIN_SESSIONS:
            raise CorpusError(
                f"the fold column has {_count(values, 'value')}: a fold needs one each for "
                "test, dev and train"
            )

        def number(utterance: Utterance) -> str:
            return numbers.get(utterance.key, "")

        folds = []
        for index, test in enumerate(values):
            dev = values[(index + 1) % len(values)]
            splits = {v: "train" for v in values} | {dev: "dev", test: "test"}
            folds.append(_fold(f"fold{test}", utterances, number, splits))
        return FoldPlan(folds)

    return rule


def speaker_kfold(k: int, seed: int) -> FoldRule:
    """Generated speaker-independent folds: every speaker is test in exactly one of ``k``
    folds (scikit-learn's `StratifiedGroupKFold`, stratified by label where the classes are
    large enough, shuffled by ``seed``); each fold's dev speakers are drawn the same way from
    its training speakers (about 1/k of them), so dev never shares a speaker with train or
    test. Fewer speakers than ``k`` (at least 3) give one fold per speaker, with a warning."""
    return lambda utterances, n_folds: _kfold(utterances, k, seed, by_speaker=True)


def utterance_kfold(k: int, seed: int) -> FoldRule:
    """Generated folds over utterances, for corpora whose speakers are not known: the rule of
    `speaker_kfold` with every utterance a group of its own (`StratifiedKFold`). A speaker's
    clips can then be in train and test: the folds are speaker-dependent."""
    return lambda utterances, n_folds: _kfold(utterances, k, seed, by_speaker=False)


def _kfold(utterances: Sequence[Utterance], k: int, seed: int, by_speaker: bool) -> FoldPlan:
    def group(utterance: Utterance) -> str:
        return utterance.speaker if by_speaker else utterance.key

    noun = "speaker" if by_speaker else "utterance"
    deciding = _deciding(utterances)
    groups = np.array([group(u) for u in deciding], dtype=object)
    distinct = sorted(set(groups.tolist()), key=natural_key)
    if len(distinct) < MIN_SPEAKERS:
        raise CorpusError(
            f"only {_count(distinct, noun)}: generated folds need {MIN_SPEAKERS}, one each for "
            "train, dev and test"
        )
    labels = np.array([u.label for u in deciding], dtype=object)
    count = min(k, len(distinct))
    folds = []
    for index, (rest, test) in enumerate(_group_splits(labels, groups, count, seed, by_speaker), 1):
        inner = min(count, len(set(groups[rest].tolist())))
        train, dev = next(_group_splits(labels[rest], groups[rest], inner, seed, by_speaker))
        splits = {g: "train" for g in groups[rest][train]} | {g: "dev" for g in groups[rest][dev]}
        splits |= {g: "test" for g in groups[test]}
        folds.append(_fold(f"fold{index}", utterances, group, splits))
    return FoldPlan(folds, _fewer_folds(count, k, distinct, noun))


def _group_splits(
    labels: np.ndarray, groups: np.ndarray, count: int, seed: int, by_speaker: bool
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(rest, held-out)`` index pairs of a ``count``-fold split keeping speakers whole (or
    of utterances), stratified by label unless every class has fewer members than folds.

    scikit-learn is imported here, so the command line's help and ``import peft_ser.corpora``
    do not load it."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    _, class_sizes = np.unique(labels, return_counts=True)
    strata = labels if np.any(class_sizes >= count) else np.zeros(len(labels))
    with warnings.catch_warnings():
        # "The least populated class has only 2 members": stratified where possible, by design
        warnings.filterwarnings("ignore", message="The least populated class")
        if by_speaker:
            splitter = StratifiedGroupKFold(count, shuffle=True, random_state=seed)
            return iter(list(splitter.split(labels, strata, groups)))
        plain = StratifiedKFold(count, shuffle=True, random_state=seed)
        return iter(list(plain.split(labels, strata)))


SHARED_PAIRS = (("train", "test"), ("train", "dev"), ("dev", "test"))
"""The split pairs the leakage check compares."""


def shared_speakers(fold: Fold, speaker_of: Mapping[str, str]) -> dict[str, list[str]]:
    """Speakers heard in two splits of ``fold``, per pair (``train_test``, ``train_dev``,
    ``dev_test``), sorted: all empty for a speaker-independent fold."""
    speakers = {split: {speaker_of[key] for key in getattr(fold, split)} for split in SPLITS}
    return {f"{a}_{b}": sorted(speakers[a] & speakers[b], key=natural_key) for a, b in SHARED_PAIRS}


def speaker_leakage(
    shared: Mapping[str, Mapping[str, Sequence[str]]], protocol: str, independent: bool
) -> str | None:
    """One sentence about the speakers the folds share (``shared``: fold name → the
    `shared_speakers` of the fold), or ``None`` when the protocol is speaker-independent and
    no fold shares any speaker."""
    leaky = [fold for fold, pairs in shared.items() if any(pairs.values())]
    if independent and not leaky:
        return None
    test_leaks = {
        fold: pairs["train_test"] for fold, pairs in shared.items() if pairs["train_test"]
    }
    if test_leaks:
        fold, names = next(iter(test_leaks.items()))
        examples = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
        measured = (
            f"{len(test_leaks)} of {len(shared)} folds share speakers between train and test "
            f"({fold}: {len(names)}, {examples})"
        )
    elif leaky:
        measured = f"{len(leaky)} of {len(shared)} folds share speakers between dev and train/test"
    else:
        measured = "no fold shares a speaker here, but nothing keeps speakers apart"
    kind = "shares speakers across splits" if independent else "is not speaker-independent"
    return (
        f"protocol {protocol} {kind}: {measured}; test scores overstate how well a model does "
        "on speakers it has never heard"
    )
