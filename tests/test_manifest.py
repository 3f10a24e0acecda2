"""Manifest, folds and labels files: lossless round trips and atomic writes."""

from __future__ import annotations

import pytest

from peft_ser.manifest import (
    Fold,
    PreparedCorpus,
    Utterance,
    load_prepared,
    read_manifest,
    save_prepared,
    select,
    write_atomic,
    write_manifest,
)

UTTERANCES = [
    Utterance(
        "a",
        "iemocap",
        "Ses01F",
        "F",
        "/data/a b/x,y.wav",
        "exc",
        "Happy",
        "Session1",
        0.1 + 0.2,
        16000,
        1,
    ),
    Utterance(
        'q"uote',
        "msp-podcast",
        "Unknown",
        "U",
        "/data/é.wav",
        "N",
        "Neutral",
        "",
        3.0000000000000004,
        44100,
        2,
    ),
]


def test_manifest_round_trip_is_lossless(tmp_path):
    write_manifest(tmp_path / "m.csv", UTTERANCES)
    assert read_manifest(tmp_path / "m.csv") == UTTERANCES


def test_prepared_round_trip(tmp_path):
    prepared = PreparedCorpus(UTTERANCES, [Fold("fold1", ["a"], [], ['q"uote'])], ["Neutral"])
    save_prepared(tmp_path, prepared)
    assert load_prepared(tmp_path) == prepared


def test_missing_column_is_named(tmp_path):
    (tmp_path / "m.csv").write_text("key,corpus\na,b\n")
    with pytest.raises(ValueError, match="speaker"):
        read_manifest(tmp_path / "m.csv")


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_atomic(tmp_path / "sub" / "f.txt", "one")
    write_atomic(tmp_path / "sub" / "f.txt", b"two")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["f.txt"]
    assert (tmp_path / "sub" / "f.txt").read_text() == "two"


def test_select_returns_utterances_in_key_order():
    prepared = PreparedCorpus(UTTERANCES, [], [])
    assert [u.key for u in select(prepared, ['q"uote', "a"])] == ['q"uote', "a"]
