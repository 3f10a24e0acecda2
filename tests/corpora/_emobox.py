"""EmoBox metadata folders in EmoBox's own format, small, written by the tests.

Every format fact is read in the emo-box/EmoBox repository (commit 08280f2):

- ``data/<corpus>/fold_<k>/<corpus>_{train,test}_fold_<k>.jsonl``, one JSON object a line
  with ``key``, ``dataset``, ``wav`` (``downloads/<corpus>/…``), ``type``, ``sample_rate``,
  ``num_frame``, ``task``, ``length``, ``emo``, ``channel``: e.g.
  ``data/iemocap/fold_1/iemocap_test_fold_1.jsonl`` and ``README.md`` ("Metadata").
- ``data/emodb/label_map.json`` spells its keys ``boredem`` and ``Neutral`` while
  ``data/emodb/fold_1/emodb_train_fold_1.jsonl`` says ``boredem`` and ``neutral``; EmoDB also
  ships the second spelling ``data/emodb/fold_1/emodb_test_fold1.jsonl`` whose rows use
  ``audio``/``label`` instead of ``wav``/``emo``.
- ``data/emovo/label_dict.json`` instead of ``label_map.json``.
- ``data/iemocap/label_map.json`` merges ``exc`` into Happy; its 5 folds are sessions.
- ``data/cremad`` has one fold whose train and test share speakers, named by the third
  field of ``data/cremad/data.seg.wrd.stm`` (``key 1 speaker start end <…> label``).
- ``data/meld/fold_1/meld_valid_fold_1.jsonl``: an official valid list.
- ``data/pavoque/fold_1/pavoque_train_fold_1.jsonl``: ``start_time``/``end_time`` segments of
  one long file.
- A test row whose label is outside the map: EmoBox's loader (``EmoBox/EmoDataset.py``,
  ``replace_label``) indexes the map with it; the fixture adds one to check it is reported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from _clips import tone

# corpus → (speakers, labels used in the lists, label map, map file name)
IEMOCAP_MAP = {"neu": "Neutral", "hap": "Happy", "ang": "Angry", "sad": "Sad", "exc": "Happy"}
EMODB_MAP = {"anger": "Angry", "boredem": "Boredom", "Neutral": "Neutral", "sad": "Sad"}
CREMAD_MAP = {"ANG": "Angry", "NEU": "Neutral", "SAD": "Sad"}
MELD_MAP = {"neutral": "Neutral", "joy": "Happy", "anger": "Angry"}


def row(corpus: str, key: str, label: str, **extra: object) -> dict[str, object]:
    """A fold-list row as EmoBox writes it (``data/iemocap/fold_1/…jsonl``)."""
    return {
        "key": f"{corpus}-{key}",
        "dataset": corpus,
        "wav": f"downloads/{corpus}/{key}.wav",
        "type": "raw",
        "sample_rate": 16000,
        "num_frame": 4800.0,
        "task": "category",
        "length": 0.3,
        "emo": label,
        "channel": 1,
        **extra,
    }


def write_list(path: Path, rows: Sequence[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_corpus(
    data: Path,
    corpus: str,
    folds: dict[int, dict[str, list[dict[str, object]]]],
    label_map: dict[str, str],
    speakers: dict[str, str] | None = None,
    map_file: str = "label_map.json",
) -> Path:
    """``data/<corpus>`` with the given fold lists, label map and speaker list."""
    folder = data / corpus
    folder.mkdir(parents=True, exist_ok=True)
    (folder / map_file).write_text(json.dumps(label_map, indent=4), encoding="utf-8")
    for number, lists in folds.items():
        for split, rows in lists.items():
            write_list(folder / f"fold_{number}" / f"{corpus}_{split}_fold_{number}.jsonl", rows)
    if speakers is not None:
        lines = [f"{key} 1 {spk} 0 0.3 <id={key},spk={spk}> x\n" for key, spk in speakers.items()]
        (folder / "data.seg.wrd.stm").write_text("".join(lines), encoding="utf-8")
    return folder


def audio_for(root: Path, folder: Path, seconds: float = 0.3) -> None:
    """A tone for every wav path the folder's lists name, below ``root``."""
    for path in folder.glob("fold_*/*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            target = root / (item.get("wav") or item["audio"])
            if not target.exists():
                tone(target, seconds)


def iemocap(data: Path) -> Path:
    """5 session folds, 2 speakers each, 4 rows each speaker, ``exc`` merged into Happy."""
    labels = ["neu", "hap", "exc", "sad"]
    rows = {
        s: [row("iemocap", f"Ses0{s}{g}_{i}", labels[i]) for g in "FM" for i in range(4)]
        for s in range(1, 6)
    }
    folds = {
        s: {"train": [r for t, rs in rows.items() if t != s for r in rs], "test": rows[s]}
        for s in rows
    }
    speakers = {str(r["key"]): str(r["key"]).split("-")[1][:6] for rs in rows.values() for r in rs}
    return write_corpus(data, "iemocap", folds, IEMOCAP_MAP, speakers)


def emodb(data: Path) -> Path:
    """5 folds, ``neutral`` vs map key ``Neutral``, ``boredem``, the second spelling
    ``emodb_test_fold1.jsonl`` (``audio``/``label``) beside ``emodb_test_fold_1.jsonl``, and
    one test row labelled ``fear``, outside the fixture's map."""
    labels = ["anger", "boredem", "neutral", "sad"]
    rows = {k: [row("emodb", f"{k:02d}a0{i}", labels[i]) for i in range(4)] for k in range(1, 6)}
    rows[1].append(row("emodb", "01a05", "fear"))
    folds = {
        k: {"train": [r for t, rs in rows.items() if t != k for r in rs], "test": rows[k]}
        for k in rows
    }
    speakers = {str(r["key"]): str(r["key"])[6:8] for rs in rows.values() for r in rs}
    folder = write_corpus(data, "emodb", folds, EMODB_MAP, speakers)
    old = [
        {"key": r["key"], "audio": r["wav"], "label": r["emo"], "sample_rate": 16000}
        for r in rows[1]
    ]
    write_list(folder / "fold_1" / "emodb_test_fold1.jsonl", old)
    return folder


def cremad(data: Path) -> Path:
    """One fold whose train and test share all 6 speakers."""
    labels = list(CREMAD_MAP)
    rows = [row("cremad", f"10{s}{i}", labels[i % 3]) for s in range(6) for i in range(4)]
    folds = {1: {"train": [r for r in rows if not str(r["key"]).endswith("3")],
                 "test": [r for r in rows if str(r["key"]).endswith("3")]}}  # fmt: skip
    speakers = {str(r["key"]): str(r["key"])[7:10] for r in rows}
    return write_corpus(data, "cremad", folds, CREMAD_MAP, speakers)


def meld(data: Path) -> Path:
    """One fold with an official valid list; no speaker list."""
    labels = list(MELD_MAP)
    lists = {
        split: [row("meld", f"{split}{i}", labels[i % 3]) for i in range(count)]
        for split, count in (("train", 9), ("valid", 3), ("test", 3))
    }
    return write_corpus(data, "meld", {1: lists}, MELD_MAP)


def emovo(data: Path) -> Path:
    """6 folds, ``label_dict.json``, no speaker list (utterance-level dev)."""
    labels = {"neu": "Neutral", "gio": "Happy", "rab": "Angry"}
    rows = {
        k: [row("emovo", f"f{k}-{i}", list(labels)[i % 3]) for i in range(3)] for k in range(1, 7)
    }
    folds = {
        k: {"train": [r for t, rs in rows.items() if t != k for r in rs], "test": rows[k]}
        for k in rows
    }
    return write_corpus(data, "emovo", folds, labels, map_file="label_dict.json")
