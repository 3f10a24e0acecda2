"""Manifest, folds and labels files: lossless round trips, and errors naming the file and
the problem for prepared directories that are missing, partial, damaged or raw corpora."""

from __future__ import annotations

import dataclasses
import shlex

import pytest

from peft_ser.corpora import load_prepared
from peft_ser.data.manifest import (
    MANIFEST_COLUMNS,
    Entry,
    Fold,
    PreparedCorpus,
    PreparedCorpusError,
    Utterance,
    read_manifest,
    save_prepared,
    select,
    write_folds,
    write_manifest,
)
from peft_ser.utils.errors import UserError

UTTERANCES = [
    Utterance(
        key="a",
        corpus="iemocap",
        speaker="Ses01F",
        gender="F",
        path="/data/a b/x,y.wav",
        raw_label="exc",
        label="Happy",
        session="Session1",
        duration=0.1 + 0.2,
        sample_rate=16000,
        channels=1,
    ),
    Utterance(
        key='q"uote',
        corpus="msp-podcast",
        speaker="Unknown",
        gender="U",
        path="/data/é.wav",
        raw_label="N",
        label="Neutral",
        session="",
        duration=3.0000000000000004,
        sample_rate=44100,
        channels=2,
    ),
]


def test_manifest_round_trip_is_lossless(tmp_path):
    write_manifest(tmp_path / "m.csv", UTTERANCES)
    assert read_manifest(tmp_path / "m.csv") == UTTERANCES


def test_the_manifest_has_a_column_for_every_field_of_an_utterance_in_its_order(tmp_path):
    assert sorted(MANIFEST_COLUMNS) == sorted(f.name for f in dataclasses.fields(Utterance))
    write_manifest(tmp_path / "m.csv", UTTERANCES)
    assert (tmp_path / "m.csv").read_text().splitlines()[0] == (
        "key,corpus,speaker,gender,path,raw_label,label,session,duration,sample_rate,channels,"
        "start,end,arousal,valence,dominance,raw_votes,votes"
    )


def test_an_utterance_is_its_entry_and_what_preparation_found():
    entry = Entry("k", "s1", "F", "/a.wav", "ang", "Session1", 0.5, 1.5, arousal=2.0)
    utterance = Utterance(
        **vars(entry), corpus="c", label="Angry", duration=1.0, sample_rate=16000, channels=1
    )
    assert (utterance.key, utterance.session, utterance.end, utterance.is_segment) == (
        "k", "Session1", 1.5, True,
    )  # fmt: skip
    assert utterance.attribute_values(["arousal"]) == [2.0]
    with pytest.raises(TypeError):  # the order before Entry: fails, never fills the wrong fields
        Utterance("k", "c", "s1", "F", "/a.wav", "ang", "Angry", "", 1.0, 16000, 1)


PREPARED = PreparedCorpus(UTTERANCES, [Fold("fold1", ["a"], [], ['q"uote'])], ["Neutral", "Happy"])


def test_prepared_round_trip(tmp_path):
    save_prepared(tmp_path, PREPARED)
    assert load_prepared(tmp_path) == PREPARED


def test_missing_column_is_named(tmp_path):
    (tmp_path / "m.csv").write_text("key,corpus\na,b\n")
    with pytest.raises(PreparedCorpusError, match=r"m\.csv: manifest lacks columns \['speaker'"):
        read_manifest(tmp_path / "m.csv")


def test_select_returns_utterances_in_key_order():
    prepared = PreparedCorpus(UTTERANCES, [], [])
    assert [u.key for u in select(prepared, ['q"uote', "a"])] == ['q"uote', "a"]


def prepared_dir(tmp_path):
    save_prepared(tmp_path / "p", PREPARED)
    return tmp_path / "p"


def load_error(directory) -> str:
    with pytest.raises(PreparedCorpusError) as error:
        load_prepared(directory)
    assert isinstance(error.value, UserError)
    return str(error.value)


@pytest.mark.parametrize("name", ["folds.json", "labels.json"])
def test_partial_directory_names_the_missing_file(tmp_path, name):
    directory = prepared_dir(tmp_path)
    (directory / name).unlink()
    assert load_error(directory) == (
        f"{directory} has manifest.csv but no {name} (an interrupted or partial copy?): "
        "run `peft-ser prepare` again with this folder as --out"
    )


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("manifest.csv", b"\xff\xfe\x00garbage", "not UTF-8 text (invalid start byte at byte 0)"),
        ("manifest.csv", b"", "manifest lacks columns ['key', 'corpus'"),
        ("folds.json", b"{not json", "not valid JSON (Expecting property name enclosed in"),
        ("folds.json", b'{"folds": []}', 'expected {"folds": [{"name", "train", "dev", "test"}'),
        ("folds.json", b'{"folds": [{"name": "f", "train": []}]}', "fold 1: expected exactly"),
        ("folds.json", b'{"folds": [{"name": 1, "train": [], "dev": [], "test": [2]}]}',
         "fold 1: name must be text"),
        ("labels.json", b'{"Neutral": 0}', "expected a list of distinct label names"),
        ("labels.json", b'["Neutral", "Neutral"]', "expected a list of distinct label names"),
    ],
)  # fmt: skip
def test_unparsable_file_is_named_with_its_problem(tmp_path, name, content, problem):
    directory = prepared_dir(tmp_path)
    (directory / name).write_bytes(content)
    assert load_error(directory).startswith(f"{directory / name}: {problem}")


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("b,c,s,F,/x.wav,N,Neutral,,abc,16000,1", "line 4: duration 'abc' is not a number"),
        ("b,c,s,F,/x.wav,N,Neutral,,1.0,16k,1", "line 4: sample_rate '16k' is not a number"),
        ("b,c,s,F,/x.wav", "line 4: fewer fields than the header"),
        ("b,c,s,F,/x.wav,N,Neutral,,1.0,16000,1,0.0,,,,,,,extra",
         "line 4: more fields than the header"),
        ("b,c,s,F,/x.wav,N,Neutral,,1.0,16000,1,0.0,,high,,",
         "line 4: arousal 'high' is not a number"),
        ("b,c,s,F,/x.wav,N,Neutral,,1.0,16000,1,0.0,,2.0,nan,",
         "line 4: valence 'nan' is not a finite number"),
        ("b,c,s,F,/x.wav,N,Neutral,,1.0,16000,1,0.0,,,,,,[1]",
         "line 4: votes '[1]' are not a JSON object"),
    ],
)  # fmt: skip
def test_bad_manifest_row_is_named_by_line(tmp_path, row, problem):
    directory = prepared_dir(tmp_path)
    with open(directory / "manifest.csv", "a") as handle:
        handle.write(row + "\n")
    assert load_error(directory) == f"{directory / 'manifest.csv'}: {problem}"


def test_fold_naming_absent_keys(tmp_path):
    directory = prepared_dir(tmp_path)
    write_folds(directory / "folds.json", [Fold("f1", ["a", "x", "y"], [], [])])
    assert load_error(directory) == (
        f"{directory / 'folds.json'}: fold f1 train names 2 keys absent from manifest.csv "
        "(first ['x', 'y']): the files come from different runs; run `peft-ser prepare` again"
    )


def test_manifest_label_absent_from_labels(tmp_path):
    directory = prepared_dir(tmp_path)
    (directory / "labels.json").write_text('["Neutral"]')
    assert load_error(directory) == (
        f"{directory / 'manifest.csv'}: labels ['Happy'] are not in labels.json ['Neutral']"
    )


def test_missing_directory_and_file_are_named(tmp_path):
    assert load_error(tmp_path / "nowhere") == (
        f"{tmp_path / 'nowhere'} does not exist; write one with `peft-ser prepare <corpus> "
        f"--root <corpus folder> --out {tmp_path / 'nowhere'}` "
        "(<corpus>: iemocap, crema-d, msp-improv, msp-podcast, ravdess, emodb, meld, "
        "or folder for your own clips in one sub-folder per label)"
    )
    (tmp_path / "file").write_text("x")
    assert load_error(tmp_path / "file") == (
        f"{tmp_path / 'file'} is a file, not a prepared corpus directory"
    )


def test_raw_corpus_gets_the_working_prepare_command(tmp_path):
    raw = tmp_path / "my corpus"
    (raw / "Actor_01").mkdir(parents=True)
    assert load_error(raw) == (
        f"{raw} is not a prepared corpus (no manifest.csv); it looks like raw RAVDESS: "
        f"prepare it first with `peft-ser prepare ravdess --root {shlex.quote(str(raw))} "
        "--out prepared/ravdess`"
    )


def test_folder_of_audio_files_gets_a_prepare_command(tmp_path):
    (tmp_path / "clips/a").mkdir(parents=True)
    (tmp_path / "clips/a/x.flac").write_bytes(b"fLaC")
    assert load_error(tmp_path / "clips") == (
        f"{tmp_path / 'clips'} is not a prepared corpus (no manifest.csv); it holds audio "
        f"files: prepare it first with `peft-ser prepare <corpus> --root {tmp_path / 'clips'} "
        "--out prepared/<corpus>` "
        "(<corpus>: iemocap, crema-d, msp-improv, msp-podcast, ravdess, emodb, meld, "
        "or folder for your own clips in one sub-folder per label)"
    )
