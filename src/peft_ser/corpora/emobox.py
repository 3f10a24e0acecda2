"""EmoBox's metadata → a prepared corpus with EmoBox's own train/test folds.

EmoBox (emo-box/EmoBox) ships, per corpus, ``data/<corpus>/label_map.json`` and one folder
per fold, ``data/<corpus>/fold_<k>/<corpus>_{train,test}_fold_<k>.jsonl``, one JSON object
per line: ``key``, ``wav`` (relative to the folder EmoBox is run from, e.g.
``downloads/iemocap/…``), ``emo`` (a key of the label map), ``sample_rate``, ``channel``, and
for corpora cut from long recordings ``start_time``/``end_time`` (PAVOQUE). What this module
accepts, and why (each read in that repository):

- EmoDB's folds also come as ``emodb_{train,test}_fold<k>.jsonl`` with ``audio``/``label``
  instead of ``wav``/``emo`` (``data/emodb/fold_1``), as do MER2023's extra test lists: the
  ``_fold_<k>`` spelling is read when present, the other otherwise, and both field names.
- EMOVO's map is ``data/emovo/label_dict.json``.
- A label that is not a key of the map but equals one ignoring case is that key: EmoDB's
  lists say ``neutral`` where its map says ``Neutral``. Keys with typos (EmoDB's
  ``boredem``) are used as spelled, since the lists spell them the same way.
- A label matching no key is left out and reported (``outside_label_set`` in report.csv),
  in train and test alike: EmoBox's loader (``EmoBox/EmoDataset.py``, ``replace_label``)
  would stop there with a KeyError, and its scores only know the map's classes.
- MELD, M3ED and MSP-Podcast ship ``<corpus>_valid_fold_1.jsonl``; EmoBox's loader uses it
  as the validation set, and so does this module (``dev``). Lists other than train, valid
  and test (MER2023's ``test1``/``test2``/``test3``) are not read.
- ``sample_rate`` and ``channel`` describe EmoBox's copy of the audio; the prepared manifest
  takes both from the audio file itself, and the summary counts files whose rate differs.

Dev, where EmoBox ships none, is carved from each fold's train list (EmoBox holds out 20%
of it, ``split_ratio=[80, 20]`` in ``EmoBox/EmoDataset.py``): by speaker when the fold's
train list has at least `MIN_DEV_SPEAKERS` speakers (``data/<corpus>/data.seg.wrd.stm``
names each key's speaker in its third field), about a fifth of them, stratified by label
(scikit-learn's `StratifiedGroupKFold`, seeded); otherwise a seeded, stratified fifth of its
utterances. Train plus dev is always EmoBox's train list and test its test list (less the
rows excluded above, each reported). EmoBox's folds are not always speaker-independent
(CREMA-D's single fold shares all 91 speakers between train and test); the leakage check
reports that as measured.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from peft_ser.corpora.base import (
    OUTSIDE_LABEL_SET,
    CorpusError,
    FoldPlan,
    FoldRule,
    LabelSet,
    Protocol,
    Scan,
)
from peft_ser.corpora.emobox_corpora import EMOBOX_CORPORA, EmoBoxCorpus, emobox_corpus
from peft_ser.corpora.folds import _group_splits
from peft_ser.corpora.own import MAX_SEED
from peft_ser.corpora.prepare import MIN_DURATION, Checks, Classify, Source, prepare_source
from peft_ser.data.manifest import Entry, Fold, PreparedCorpus, Utterance
from peft_ser.utils.errors import match_name

MAP_FILES = ("label_map.json", "label_dict.json")
SPEAKER_FILE = "data.seg.wrd.stm"
DEV_SHARE = 5
"""Dev is one part in this many of a fold's train list (EmoBox's 80/20 split)."""
MIN_DEV_SPEAKERS = 5
"""Fewer training speakers than this get an utterance-level dev split: holding out whole
speakers would then take far more than a fifth of the training data (SAVEE trains on 3)."""
_LISTS = ("train", "valid", "test")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One line of an EmoBox fold list."""

    key: str
    wav: str
    emo: str
    sample_rate: float | None
    start: float
    end: float | None


@dataclass(frozen=True)
class EmoBoxFold:
    name: str
    train: list[Row]
    valid: list[Row] | None
    test: list[Row]


@dataclass(frozen=True)
class EmoBoxMetadata:
    """One corpus's EmoBox metadata folder, read: the corpus, its label map, its folds and
    the speaker of each key that ``data.seg.wrd.stm`` names."""

    corpus: EmoBoxCorpus
    label_map: dict[str, str]
    folds: list[EmoBoxFold]
    speakers: dict[str, str]


def _json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorpusError(f"{path}: not a readable JSON file ({error})") from None


def read_label_map(folder: Path) -> dict[str, str]:
    """The corpus's label map: raw label → class name, as EmoBox writes it."""
    path = next((folder / name for name in MAP_FILES if (folder / name).is_file()), None)
    if path is None:
        raise CorpusError(f"{folder}: no label_map.json, so not an EmoBox data/<corpus> folder")
    mapping = _json(path)
    if not isinstance(mapping, dict) or not mapping:
        raise CorpusError(f"{path}: expected a JSON object of raw label → class name")
    for raw, name in mapping.items():
        if not raw.strip() or not isinstance(name, str) or not name.strip():
            raise CorpusError(f"{path}: {raw!r}: {name!r} is not label → class name")
    return {raw: name.strip() for raw, name in mapping.items()}


def _seconds(value: object, where: str, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CorpusError(f"{where}: {field} {value!r} is not a number of seconds")
    if value < 0:
        raise CorpusError(f"{where}: {field} {value!r} is negative")
    return float(value)


def parse_row(line: str, where: str) -> Row:
    """One fold-list line; `CorpusError` naming ``where`` (file:line) when it is not one."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise CorpusError(f"{where}: not a JSON object ({error.msg})") from None
    if not isinstance(item, dict):
        raise CorpusError(f"{where}: not a JSON object")
    fields = {}
    for name, spellings in (
        ("key", ("key",)),
        ("wav", ("wav", "audio")),
        ("emo", ("emo", "label")),
    ):
        value = next((item[s] for s in spellings if s in item), None)
        if not isinstance(value, str) or not value.strip():
            raise CorpusError(f"{where}: no {' or '.join(spellings)} text")
        fields[name] = value.strip()
    rate = item.get("sample_rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)):
        raise CorpusError(f"{where}: sample_rate {rate!r} is not a number")
    start = _seconds(item.get("start_time"), where, "start_time") or 0.0
    end = _seconds(item.get("end_time"), where, "end_time")
    if end is not None and end <= start:
        raise CorpusError(f"{where}: end_time {end} is not after start_time {start}")
    return Row(fields["key"], fields["wav"], fields["emo"], rate, start, end)


def read_list(path: Path) -> list[Row]:
    """Every row of one fold list; a list with no row or a damaged line is refused whole,
    since the folds must be EmoBox's exactly."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(f"{path}: cannot read the fold list ({error})") from None
    rows = [
        parse_row(line, f"{path}:{number}")
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip()
    ]
    if not rows:
        raise CorpusError(f"{path}: the fold list is empty")
    return rows


def _list_file(fold_dir: Path, corpus: str, split: str, number: str) -> Path | None:
    """The fold's list ``split``: EmoBox's ``_fold_<k>`` spelling, else its ``_fold<k>``."""
    for name in (f"{corpus}_{split}_fold_{number}.jsonl", f"{corpus}_{split}_fold{number}.jsonl"):
        if (fold_dir / name).is_file():
            return fold_dir / name
    return None


def _corpus_name(folder: Path) -> str:
    """The corpus the folder holds: its own name, or the prefix of its first test list."""
    if folder.name in EMOBOX_CORPORA:
        return folder.name
    for path in sorted(folder.glob("fold_1/*_test_fold*1.jsonl")):
        prefix = path.name.split("_test_fold")[0]
        if prefix in EMOBOX_CORPORA:
            return prefix
    return emobox_corpus(folder.name).name


def read_speakers(folder: Path) -> dict[str, str]:
    """Key → speaker from ``data.seg.wrd.stm`` (``key channel speaker start end …``); empty
    when the file is absent. Lines without those fields name no speaker."""
    path = folder / SPEAKER_FILE
    if not path.is_file():
        return {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CorpusError(f"{path}: cannot read the speaker list ({error})") from None
    fields = (line.split() for line in lines)
    return {parts[0]: parts[2] for parts in fields if len(parts) >= 3}


def read_metadata(folder: str | Path) -> EmoBoxMetadata:
    """Read an EmoBox ``data/<corpus>`` folder; `CorpusError` in one line when it is not one
    or lacks a fold or list EmoBox ships."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CorpusError(f"--metadata {folder}: not a folder (give EmoBox's data/<corpus>)")
    corpus = emobox_corpus(_corpus_name(folder))
    label_map = read_label_map(folder)
    numbers = sorted(
        (p.name.removeprefix("fold_") for p in folder.glob("fold_*") if p.is_dir()),
        key=lambda n: (not n.isdigit(), int(n) if n.isdigit() else 0, n),
    )
    expected = [str(k) for k in range(1, corpus.folds + 1)]
    if numbers != expected:
        found = ", ".join(f"fold_{n}" for n in numbers) or "none"
        raise CorpusError(
            f"{folder}: EmoBox ships {corpus.folds} fold folder(s) for {corpus.name} "
            f"(fold_1 … fold_{corpus.folds}), found {found}: the metadata is incomplete"
        )
    folds = []
    for number in numbers:
        lists: dict[str, list[Row] | None] = {}
        for split in _LISTS:
            path = _list_file(folder / f"fold_{number}", corpus.name, split, number)
            if path is None and split != "valid":
                raise CorpusError(
                    f"{folder / f'fold_{number}'}: no {corpus.name}_{split}_fold_{number}.jsonl"
                    ": the metadata is incomplete"
                )
            lists[split] = read_list(path) if path is not None else None
        train, test = lists["train"] or [], lists["test"] or []
        folds.append(EmoBoxFold(f"fold_{number}", train, lists["valid"], test))
    return EmoBoxMetadata(corpus, label_map, folds, read_speakers(folder))


def _entries(metadata: EmoBoxMetadata, root: Path) -> list[Entry]:
    """One entry per key over all lists; a key listed twice with a different file, label or
    segment is refused (the lists would contradict each other)."""
    rows: dict[str, Row] = {}
    for fold in metadata.folds:
        for row in [*fold.train, *(fold.valid or []), *fold.test]:
            first = rows.setdefault(row.key, row)
            if (first.wav, first.emo, first.start, first.end) != (
                row.wav, row.emo, row.start, row.end,
            ):  # fmt: skip
                raise CorpusError(
                    f"EmoBox {metadata.corpus.name}: key {row.key!r} is listed with "
                    f"{first.wav!r} ({first.emo}) and {row.wav!r} ({row.emo})"
                )
    return [
        Entry(
            row.key,
            metadata.speakers.get(row.key, row.key),
            "",
            str(root / row.wav),
            row.emo,
            start=row.start,
            end=row.end,
        )
        for row in rows.values()
    ]


def _dev_keys(train: Sequence[Utterance], seed: int) -> tuple[set[str], bool]:
    """The keys of ``train`` that become dev, and whether they keep speakers apart."""
    speakers = {u.speaker for u in train}
    by_speaker = len(speakers) >= MIN_DEV_SPEAKERS
    if len(train) < DEV_SHARE and not by_speaker:
        return set(), False
    labels = np.array([u.label for u in train], dtype=object)
    groups = np.array([u.speaker if by_speaker else u.key for u in train], dtype=object)
    _, held_out = next(_group_splits(labels, groups, DEV_SHARE, seed, by_speaker))
    return {train[i].key for i in held_out}, by_speaker


def emobox_rule(metadata: EmoBoxMetadata, seed: int) -> FoldRule:
    """The fold rule: EmoBox's lists, dev its valid list or carved from train (see module)."""

    def rule(utterances: Sequence[Utterance], n_folds: int) -> FoldPlan:
        usable = {u.key: u for u in utterances}
        folds: list[Fold] = []
        few: list[str] = []
        for fold in metadata.folds:
            train = [usable[r.key] for r in fold.train if r.key in usable]
            test = [r.key for r in fold.test if r.key in usable]
            if fold.valid is not None:
                dev = [r.key for r in fold.valid if r.key in usable]
                folds.append(Fold(fold.name, [u.key for u in train], dev, test))
                continue
            held, by_speaker = _dev_keys(train, seed)
            if not by_speaker:
                few.append(f"{fold.name} ({len({u.speaker for u in train})})")
            rest = [u.key for u in train if u.key not in held]
            folds.append(Fold(fold.name, rest, [u.key for u in train if u.key in held], test))
        notes = (
            [
                f"fewer than {MIN_DEV_SPEAKERS} training speakers in {', '.join(few)}: their dev "
                "is a seeded, stratified fifth of the train list's utterances"
            ]
            if few
            else []
        )
        return FoldPlan(folds, notes)

    return rule


def _classify(label_map: dict[str, str]) -> Classify:
    """Raw label → class: the map's key, else the only key equal to it ignoring case."""

    def classify(raw: str) -> tuple[str | None, str]:
        key = match_name(raw, label_map)
        return (label_map[key], "") if key is not None else (None, OUTSIDE_LABEL_SET)

    return classify


def _case_note(entries: Sequence[Entry], label_map: dict[str, str]) -> list[str]:
    """The warning naming labels read as a map key of another case, with their counts."""
    folded = Counter(
        f"{e.raw_label!r} as {match_name(e.raw_label, label_map)!r}"
        for e in entries
        if e.raw_label not in label_map and match_name(e.raw_label, label_map) is not None
    )
    if not folded:
        return []
    listed = ", ".join(f"{text} ({count})" for text, count in sorted(folded.items()))
    return [f"labels read as a label_map.json key of another case: {listed}"]


def prepare_emobox(
    metadata_dir: str | Path,
    root: str | Path,
    out: str | Path | None = None,
    *,
    seed: int = 0,
    min_duration: float = MIN_DURATION,
    check_silence: bool = True,
    verbose: bool = False,
) -> PreparedCorpus:
    """Prepare the EmoBox corpus of ``metadata_dir`` (EmoBox's ``data/<corpus>``), its audio
    paths read below ``root``, into ``out`` (default ``prepared/emobox-<corpus>``), with
    EmoBox's folds and label map; ``seed`` draws the dev splits EmoBox does not ship."""
    if isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise CorpusError(f"--seed {seed}: give a whole number from 0 to {MAX_SEED}")
    metadata = read_metadata(metadata_dir)
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CorpusError(f"--root {root}: no such folder (the folder EmoBox's wav paths start in)")
    entries = _entries(metadata, root)
    audio = {entry.path for entry in entries if Path(entry.path).is_file()}
    corpus = metadata.corpus
    names = tuple(dict.fromkeys(metadata.label_map.values()))
    label_set = LabelSet(names, dict(metadata.label_map), "EmoBox's label_map.json")
    known = all(key in metadata.speakers for key in (e.key for e in entries))
    description = (
        f"EmoBox's {len(metadata.folds)} fold(s) of {corpus.title}: train and test lists as "
        "shipped, dev EmoBox's valid list or carved from train (by speaker where it has "
        f"{MIN_DEV_SPEAKERS} or more, seed {seed})"
    )
    protocol = Protocol(
        description, len(metadata.folds), emobox_rule(metadata, seed), speaker_independent=known
    )
    source = Source(
        f"emobox-{corpus.name}", f"EmoBox {corpus.title}", root, Scan(entries, audio),
        _classify(metadata.label_map), label_set, "emobox", "emobox", protocol,
        rated=(), notes=tuple(_case_note(entries, metadata.label_map)),
    )  # fmt: skip
    out = Path(out) if out is not None else Path("prepared") / f"emobox-{corpus.name}"
    prepared = prepare_source(source, out, Checks(check_silence, min_duration, 0), verbose=verbose)
    _rate_note(prepared.manifest, metadata, verbose)
    return prepared


def _rate_note(utterances: Sequence[Utterance], metadata: EmoBoxMetadata, verbose: bool) -> None:
    """Say how many audio files have another sample rate than EmoBox's ``sample_rate`` field:
    a different copy of the corpus than EmoBox's (the manifest keeps the file's own rate)."""
    rates = {
        row.key: row.sample_rate
        for fold in metadata.folds
        for row in [*fold.train, *(fold.valid or []), *fold.test]
    }
    differ = [u for u in utterances if rates.get(u.key) not in (None, u.sample_rate)]
    if differ:
        first = differ[0]
        message = (
            f"{len(differ)} utterance(s) have another sample rate than EmoBox's sample_rate "
            f"field (e.g. {first.key}: {first.sample_rate} Hz, EmoBox {rates[first.key]:g} Hz); "
            "the file's own rate is used"
        )
        log.warning(message)
        if verbose:
            print(f"warning: {message}")
