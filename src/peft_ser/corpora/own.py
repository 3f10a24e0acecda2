"""Your own data: what the table and folder corpora share once their rows are read.

A corpus the user labelled has no label code list and no protocol of its own. Its classes
come from the data (sorted) or from ``--labels`` (mapped, merged, in the order given); its
folds come from the table when it has a ``split`` or ``fold`` column, else they are generated
speaker-independent k-fold. Without a speaker the user must say what to do: name the
speaker, or accept utterance-level folds, which the prepared corpus then records as
speaker-dependent (`PreparedCorpus.speaker_leakage`). Only a table can carry attribute
values (its ``arousal``, ``valence``, ``dominance`` columns), so only a table can be prepared
for attribute targets, and only a table can carry annotator votes (a ``votes`` column or
``votes_<label>`` columns, `peft_ser.corpora.table_votes`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from peft_ser.corpora.base import (
    OUTSIDE_LABEL_SET,
    CorpusError,
    Entry,
    LabelSet,
    Protocol,
    Scan,
    label_map,
    natural_key,
)
from peft_ser.corpora.cells import text_cell
from peft_ser.corpora.folds import given_folds, given_split, speaker_kfold, utterance_kfold
from peft_ser.corpora.prepare import (
    MIN_DURATION,
    Checks,
    Source,
    check_min_duration,
    prepare_source,
)
from peft_ser.data.manifest import PreparedCorpus
from peft_ser.utils.errors import match_name

SplitBy = Literal["speaker", "utterance"]
MAX_FOLDS = 1000
"""More generated folds than this are refused: each is a training run, and no corpus needs
more (leave-one-speaker-out on the largest has fewer)."""
MAX_SEED = 2**32 - 1
"""The largest seed scikit-learn's fold splitters take."""
UNKNOWN_SPEAKER = "Unknown"
"""The speaker of rows that name none: one group, so they all land in the same split."""
OWN_SCALE = "as given in the table"
"""The scale of a table's attribute values: the user's own, whatever it is."""
OWN_VOTES = "the table's votes column or votes_<label> columns"
"""Where a table's annotator votes come from."""


@dataclass(frozen=True)
class OwnDataOptions:
    """The choices a user makes for a corpus of their own (``peft-ser prepare table|folder``)."""

    labels: str | None = None
    """``None``: every label in the data, sorted; else a mapping for `label_map`."""
    min_per_class: int = 1
    """Classes with fewer usable utterances are left out (``rare_label``)."""
    folds_k: int = 5
    seed: int = 0
    split_by: SplitBy = "speaker"
    min_duration: float = MIN_DURATION
    check_silence: bool = True
    targets: str = "categorical"
    """What the corpus is prepared for (see `peft_ser.corpora.targets`); attribute targets
    need a table with attribute columns."""

    def __post_init__(self) -> None:
        if self.folds_k < 2:
            raise CorpusError(f"--folds-k {self.folds_k}: k-fold needs at least 2 folds")
        if self.folds_k > MAX_FOLDS:
            raise CorpusError(
                f"--folds-k {self.folds_k}: at most {MAX_FOLDS} folds (each is a training run)"
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise CorpusError(f"--seed {self.seed}: give a whole number from 0 to {MAX_SEED}")
        if self.min_per_class < 0:
            raise CorpusError(f"--min-per-class {self.min_per_class} must be 0 or more")
        check_min_duration(self.min_duration)
        if self.split_by not in ("speaker", "utterance"):
            raise CorpusError(f"--split-by {self.split_by!r}: choose speaker or utterance")


@dataclass
class OwnScan:
    """What a table or folder holds: rows and files, the folds the table assigns (split name
    or fold number per key, first row of a key wins), and whether speakers are known."""

    scan: Scan
    has_speakers: bool
    speaker_hint: str
    """How the user names the speaker for this kind of corpus, for the error without one."""
    splits: dict[str, str] = field(default_factory=dict)
    fold_numbers: dict[str, str] = field(default_factory=dict)
    rated: tuple[str, ...] = ()
    """The attributes the rows carry values of (a table's attribute columns)."""
    notes: list[str] = field(default_factory=list)
    """Warnings about how the rows were found (files reached twice through links)."""


def prepare_own(
    name: str,
    root: Path,
    own: OwnScan,
    out: str | Path | None,
    options: OwnDataOptions,
    *,
    verbose: bool = False,
) -> PreparedCorpus:
    """Prepare a user-labelled corpus ``name`` read from ``root`` into ``out`` (default
    ``prepared/<name>``), with the label set and folds ``options`` and the data choose."""
    label_set, merged = _label_set(own.scan.entries, options.labels)
    protocol_name, protocol = choose_protocol(own, options)

    def classify(raw: str) -> tuple[str | None, str]:
        label = label_set.codes.get(raw)
        return (label, "") if label is not None else (None, OUTSIDE_LABEL_SET)

    source = Source(
        name, name, root, own.scan, classify, label_set, label_set.description, protocol_name,
        protocol, options.targets, OWN_SCALE if own.rated else "", own.rated,
        tuple(own.notes) + merged, votes=OWN_VOTES,
    )  # fmt: skip
    checks = Checks(options.check_silence, options.min_duration, options.min_per_class)
    out = Path(out) if out is not None else Path("prepared") / name
    return prepare_source(source, out, checks, verbose=verbose)


def _label_set(entries: list[Entry], spec: str | None) -> tuple[LabelSet, tuple[str, ...]]:
    """The label set and the warning about spellings it merged.

    Without ``spec``: every raw label of the data under its own name, spellings that differ
    only in case (``calm``, ``Calm``, ``CALM``) one class named by its most frequent spelling
    (ties: the first in sorted order); an empty label, which only attribute targets keep, is
    no class. With ``spec``, the mapping it asks for (`label_map`, its codes read by the rule
    of `peft_ser.corpora.cells`), a raw label that differs from one code only in case
    counting as that code. Surrounding whitespace is stripped before either. The categories
    annotators voted for map as the labels do, but make no class of their own: a category
    no label names counts as ``other``.
    """
    counts = Counter(entry.raw_label for entry in entries if entry.raw_label)
    voted = {code for entry in entries for code in entry.raw_votes or {}} - set(counts)
    if spec is None:
        groups: dict[str, list[str]] = {}
        for raw in sorted(counts, key=natural_key):
            groups.setdefault(raw.casefold(), []).append(raw)
        name_of = {
            folded: max(spellings, key=lambda r: counts[r]) for folded, spellings in groups.items()
        }
        codes = {raw: name_of[raw.casefold()] for raw in counts}
        codes |= {code: name_of[code.casefold()] for code in voted if code.casefold() in name_of}
        names = sorted(set(codes.values()), key=natural_key)
        label_set = LabelSet(tuple(names), codes, "labels from the data")
    else:
        mapped = label_map(spec)
        codes = {}
        for code, name in mapped.codes.items():
            if codes.setdefault(text_cell(code), name) != name:
                raise CorpusError(f"--labels {spec!r}: {code!r} is mapped twice")
        for raw in [*counts, *sorted(voted)]:
            match = raw if raw in codes else match_name(raw, codes)
            if match is not None:
                codes[raw] = codes[match]
        label_set = LabelSet(mapped.names, codes, mapped.description)
    return label_set, _merge_note(label_set.codes, counts)


def _merge_note(codes: dict[str, str], counts: Counter[str]) -> tuple[str, ...]:
    """The warning naming each class that raw spellings differing only in case were merged
    into, with the count of each spelling (most frequent first)."""
    variants: dict[tuple[str, str], list[str]] = {}
    for raw in sorted(counts, key=lambda r: (-counts[r], r)):
        if raw in codes:
            variants.setdefault((codes[raw], raw.casefold()), []).append(raw)
    merged = [(name, raws) for (name, _), raws in variants.items() if len(raws) > 1]
    if not merged:
        return ()
    listed = "; ".join(
        f"{name} from " + ", ".join(f"{raw!r} ({counts[raw]})" for raw in raws)
        for name, raws in merged
    )
    return (f"labels that differ only in case were merged into one class: {listed}",)


def choose_protocol(own: OwnScan, options: OwnDataOptions) -> tuple[str, Protocol]:
    """The table's own split or folds when it has them, else generated k-fold: by speaker,
    or by utterance when asked (speaker-dependent); without speakers and without that
    request, a `CorpusError` saying how to choose."""
    k, seed = options.folds_k, options.seed
    if own.splits and own.fold_numbers:
        raise CorpusError(
            "the table has both a split and a fold column: keep one (map the other away with "
            "--columns, e.g. --columns fold=none)"
        )
    if own.splits:
        return "given-split", Protocol(
            "the table's split column (train / dev / test)", 1, given_split(own.splits)
        )
    if own.fold_numbers:
        count = len(set(own.fold_numbers.values()))
        description = (
            "the table's fold column: test on one number, dev on the next, train on the rest"
        )
        return "given-folds", Protocol(description, count, given_folds(own.fold_numbers))
    if options.split_by == "utterance":
        description = (
            f"{k} folds over utterances stratified by label (seed {seed}): speaker-dependent"
        )
        return "utterance-kfold", Protocol(
            description, k, utterance_kfold(k, seed), speaker_independent=False
        )
    if not own.has_speakers:
        raise CorpusError(
            f"no speaker is known, so speaker-independent folds cannot be made: name it with "
            f"{own.speaker_hint}, or pass --split-by utterance for folds over utterances "
            "(speaker-dependent: scores then overstate how well a model does on new speakers)"
        )
    description = (
        f"{k} speaker-independent folds stratified by label, dev speakers drawn from the "
        f"training speakers (seed {seed})"
    )
    return "speaker-kfold", Protocol(description, k, speaker_kfold(k, seed))
