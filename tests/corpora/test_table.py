"""The table corpus: CSV, TSV, JSON Lines and Parquet tables with every optional column and
every defect a row can have, segments of longer files, column mapping, the split and fold
columns, and the choice the user must make when no speaker is known."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from _clips import (
    FORMATS,
    junk,
    non_finite,
    ramp,
    report,
    speakers_by_split,
    tone,
    write_table,
)
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.corpora import CorpusError, OwnDataOptions, prepare_table, preprocess_corpus
from peft_ser.corpora.table import parse_columns
from peft_ser.data.audio import load_audio
from peft_ser.data.audio_cache import AudioCache
from peft_ser.data.manifest import read_prepared

SPEAKERS = ("s1", "s2", "s3", "s4", "s5", "s6")
LABELS = ("neutral", "angry", "sad")
SPLIT_OF = {"s1": "train", "s2": "train", "s3": "Train", "s4": "training", "s5": "dev"}
runner = CliRunner()


def good_rows(root, **columns):
    """Two clips per speaker and label, with every optional column (``columns`` adds more,
    as functions of speaker and take)."""
    rows = []
    for number, speaker in enumerate(SPEAKERS):
        for label in LABELS:
            for take in (1, 2):
                tone(root / "clips" / f"{speaker}_{label}_{take}.wav")
                row = {
                    "path": f"clips/{speaker}_{label}_{take}.wav",
                    "label": label,
                    "speaker": speaker,
                    "gender": "female" if number % 2 else "Male",
                    "session": f"day{take}",
                    "key": f"{speaker}-{label}-{take}",
                    "start": None,
                    "end": None,
                }
                rows.append(row | {name: make(speaker, take) for name, make in columns.items()})
    return rows


def defect_rows(root):
    """One row per defect; the key says which."""
    junk(root / "clips/junk.wav")
    non_finite(root / "clips/nan.wav")
    tone(root / "clips/short.wav", seconds=0.05)
    ramp(root / "long/s1_dialog.wav", seconds=2.0)
    base = {"speaker": "s1", "gender": "Male", "session": "day1", "start": None, "end": None}
    defects = {
        "missing": {"path": "clips/nothere.wav"},
        "junk": {"path": "clips/junk.wav"},
        "nan": {"path": "clips/nan.wav"},
        "short": {"path": "clips/short.wav"},
        "nolabel": {"path": "clips/s1_sad_1.wav", "label": ""},
        "outside": {"path": "long/s1_dialog.wav", "start": "5.0", "end": "6.0"},
        "s1-neutral-1": {"path": "clips/s1_sad_2.wav", "label": "sad"},
        "badstart": {"path": "long/s1_dialog.wav", "start": "abc"},
        "badsplit": {"path": "clips/s1_sad_1.wav", "split": "holdout"},
        "backwards": {"path": "long/s1_dialog.wav", "start": "1.5", "end": "1.0"},
    }
    segments = [
        {"path": "long/s1_dialog.wav", "label": "neutral", "key": "turn1", "start": "0.0",
         "end": "0.5"},
        {"path": "long/s1_dialog.wav", "label": "angry", "key": "turn2", "start": "0.5",
         "end": "1.2"},
    ]  # fmt: skip
    defective = [base | {"label": "neutral", "key": key} | row for key, row in defects.items()]
    return [base | row for row in segments] + defective


EXPECTED_REPORT = {
    "badstart": ("malformed_label_row", "{46}: start 'abc' is not a number of seconds"),
    "badsplit": ("malformed_label_row", "{47}: split 'holdout' is not one of train, dev, test"),
    "backwards": ("malformed_label_row", "{48}: end 1.0 is not after start 1.5"),
    "nolabel": ("empty_label", "{43}: the label is empty"),
    "s1-neutral-1": ("duplicate", "listed again with label 'sad'; first kept"),
    "missing": ("missing_audio", "label row has no audio file at this path"),
    "junk": ("unreadable_audio", None),
    "nan": ("non_finite_audio", "1 of 4800 samples are not finite (NaN or ±inf)"),
    "outside": ("segment_outside_audio", "segment 5.0 s to 6.0 s of a 2.0-s file"),
    "short": ("too_short", "0.050 s, shorter than the minimum of 0.1 s"),
}


def where(fmt, detail):
    """``detail`` with its ``{n}`` (the n-th data row) as a text table's line (after the
    header in CSV and TSV) or a Parquet file's row."""
    return re.sub(
        r"\{(\d+)\}",
        lambda m: {"csv": "line {}", "tsv": "line {}", "jsonl": "line {}", "parquet": "row {}"}[
            fmt
        ].format(int(m.group(1)) + (fmt in ("csv", "tsv"))),
        detail,
    )


def split_rows(root):
    """Good rows with a split column (s1-s4 train in several spellings, s5 dev, s6 test),
    then the defects (s1, training)."""
    rows = good_rows(root, split=lambda speaker, take: SPLIT_OF.get(speaker, "TEST"))
    return rows + [{"split": "train"} | row for row in defect_rows(root)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_gives_the_same_corpus_and_report(tmp_path, fmt):
    table = write_table(tmp_path / f"data/clips.{fmt}", split_rows(tmp_path / "data"))
    prepared = prepare_table(table, tmp_path / "out")
    assert prepared.labels == ["angry", "neutral", "sad"]
    by_key = {u.key: u for u in prepared.manifest}
    assert len(by_key) == 6 * 3 * 2 + 2
    found = report(tmp_path / "out")
    assert {key: reason for key, (reason, _) in found.items()} == {
        key: reason for key, (reason, _) in EXPECTED_REPORT.items()
    }
    for key, (_, detail) in EXPECTED_REPORT.items():
        assert detail is None or found[key][1] == where(fmt, detail), key
    assert found["junk"][1].startswith("unreadable or corrupt audio")
    first = by_key["s2-sad-1"]
    assert (first.path, first.speaker, first.gender, first.session, first.raw_label) == (
        str(tmp_path / "data/clips/s2_sad_1.wav"), "s2", "F", "day1", "sad"
    )  # fmt: skip
    assert (first.corpus, first.start, first.end, first.duration) == ("clips", 0.0, None, 0.3)
    assert by_key["s1-neutral-1"].raw_label == "neutral"  # the first of the duplicate rows
    (fold,) = prepared.folds
    assert fold.name == "given"
    assert speakers_by_split(prepared) == [(["s1", "s2", "s3", "s4"], ["s5"], ["s6"])]
    assert {"turn1", "turn2"} <= set(fold.train)
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["protocol"] == "given-split"
    assert summary["speaker_independent"] is True and prepared.speaker_leakage is None
    assert summary["excluded"] == {
        "malformed_label_row": 3, "empty_label": 1, "duplicate": 1, "missing_audio": 1,
        "unreadable_audio": 1, "non_finite_audio": 1, "segment_outside_audio": 1, "too_short": 1,
    }  # fmt: skip


def test_segments_of_a_longer_file_load_their_own_samples(tmp_path):
    table = write_table(tmp_path / "data/clips.csv", split_rows(tmp_path / "data"))
    prepare_table(table, tmp_path / "out")
    prepared = read_prepared(tmp_path / "out")
    by_key = {u.key: u for u in prepared.manifest}
    turn1, turn2 = by_key["turn1"], by_key["turn2"]
    assert (turn1.start, turn1.end, turn1.duration, turn1.is_segment) == (0.0, 0.5, 0.5, True)
    assert (turn2.start, turn2.end, turn2.duration) == (0.5, 1.2, 0.7)
    samples = load_audio(turn2.path, start=turn2.start, end=turn2.end)
    assert samples.shape == (11200,)
    assert samples[0] == pytest.approx(0.25) and samples[-1] == pytest.approx(19199 / 32000)
    assert not by_key["s2-sad-1"].is_segment
    cache = AudioCache(tmp_path / "cache")
    assert cache.entry(turn1.path, 0.0, 0.5) != cache.entry(turn2.path, 0.5, 1.2)
    assert cache.entry(turn1.path) != cache.entry(turn1.path, 0.0, 0.5)
    result = preprocess_corpus(tmp_path / "out", tmp_path / "cache")
    assert (result.computed, result.failed) == (len(by_key), [])
    np.testing.assert_array_equal(cache.load(cache.entry(turn2.path, 0.5, 1.2)), samples)


def test_an_open_ended_segment_runs_to_the_end_of_its_file(tmp_path):
    ramp(tmp_path / "long.wav", seconds=1.0)
    for speaker in ("a", "b", "c"):
        tone(tmp_path / f"{speaker}.wav")
    rows = [{"path": "long.wav", "label": "x", "speaker": "a", "start": 0.75, "split": "train"}]
    rows += [{"path": f"{s}.wav", "label": "x", "speaker": s, "split": split}
             for s, split in (("a", "train"), ("b", "dev"), ("c", "test"))]  # fmt: skip
    rows += [{"path": f"{s}.wav", "label": "y", "speaker": s, "split": split, "key": f"{s}y"}
             for s, split in (("a", "train"), ("b", "dev"), ("c", "test"))]  # fmt: skip
    prepared = prepare_table(write_table(tmp_path / "t.jsonl", rows), tmp_path / "out")
    segment = prepared.manifest[0]
    assert (segment.key, segment.start, segment.end, segment.duration) == (
        "long.wav@0.75-", 0.75, None, 0.25
    )  # fmt: skip
    assert load_audio(segment.path, start=0.75).shape == (4000,)


def test_fold_column_rotates_test_and_dev(tmp_path):
    fold_of = {"s1": 1, "s2": 1, "s3": 2, "s4": 2, "s5": 3, "s6": 3}
    rows = good_rows(tmp_path / "data", fold=lambda speaker, take: fold_of[speaker])
    prepared = prepare_table(write_table(tmp_path / "data/t.csv", rows), tmp_path / "out")
    assert [fold.name for fold in prepared.folds] == ["fold1", "fold2", "fold3"]
    assert speakers_by_split(prepared) == [
        (["s5", "s6"], ["s3", "s4"], ["s1", "s2"]),
        (["s1", "s2"], ["s5", "s6"], ["s3", "s4"]),
        (["s3", "s4"], ["s1", "s2"], ["s5", "s6"]),
    ]
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["protocol"] == "given-folds" and summary["warnings"] == []


def test_parquet_with_typed_columns_and_nulls(tmp_path):
    fold_of = {"s1": 1, "s2": 1, "s3": 2, "s4": 2, "s5": 3, "s6": 3}
    rows = good_rows(tmp_path / "data", fold=lambda speaker, take: fold_of[speaker])
    for row in rows:
        row["start"], row["end"] = (0.0, 0.25) if row["key"].endswith("-1") else (None, None)
    prepared = prepare_table(write_table(tmp_path / "data/t.parquet", rows), tmp_path / "out")
    by_key = {u.key: u for u in prepared.manifest}
    assert (by_key["s1-sad-1"].end, by_key["s1-sad-1"].duration) == (0.25, 0.25)
    assert (by_key["s1-sad-2"].end, by_key["s1-sad-2"].duration) == (None, 0.3)
    assert [fold.name for fold in prepared.folds] == ["fold1", "fold2", "fold3"]


def test_broken_json_lines_are_malformed_rows_not_a_broken_table(tmp_path):
    rows = good_rows(tmp_path / "data", split=lambda speaker, take: SPLIT_OF.get(speaker, "test"))
    table = write_table(tmp_path / "data/t.jsonl", rows)
    with open(table, "a") as handle:
        handle.write('{"path": "clips/s1_sad_1.wav", "label": \n\n["a list"]\n')
    prepared = prepare_table(table, tmp_path / "out")
    assert len(prepared.manifest) == 36
    assert (tmp_path / "out/report.csv").read_text().splitlines() == [
        "key,path,reason,detail",
        f',{table},malformed_label_row,"line 37: not JSON (Expecting value, column 41)"',
        f",{table},malformed_label_row,line 39: not a JSON object",
    ]


def test_csv_rows_with_too_many_or_too_few_fields(tmp_path):
    rows = good_rows(tmp_path / "data", split=lambda speaker, take: SPLIT_OF.get(speaker, "test"))
    table = write_table(tmp_path / "data/t.csv", rows)
    with open(table, "a") as handle:
        handle.write("clips/s1_sad_1.wav,sad\nclips/s1_sad_1.wav,sad,s1,M,d,k,,,test,extra\n")
    prepare_table(table, tmp_path / "out")
    assert report(tmp_path / "out") == {
        "clips/s1_sad_1.wav": ("malformed_label_row", "line 38: 2 fields, the header has 9"),
        "k": ("malformed_label_row", "line 39: 10 fields, the header has 9"),
    }


def test_columns_are_mapped_and_matched_in_any_case(tmp_path):
    rows = [
        {"File": row["path"], "Emotion": row["label"], "SPEAKER": row["speaker"]}
        for row in good_rows(tmp_path / "data")
    ]
    table = write_table(tmp_path / "data/t.tsv", rows)
    options = OwnDataOptions(folds_k=3)
    mapping = parse_columns("path=File, label=emotion")
    prepared = prepare_table(table, tmp_path / "out", columns=mapping, options=options)
    assert len(prepared.manifest) == 36 and len(prepared.folds) == 3
    assert prepared.manifest[0].key == "clips/s1_neutral_1.wav"
    with pytest.raises(CorpusError) as missing:
        prepare_table(table, tmp_path / "out2", options=options)
    assert str(missing.value) == (
        f"{table}: no 'path' column; its columns are ['File', 'Emotion', 'SPEAKER']: "
        "map one with --columns path=<column>"
    )
    with pytest.raises(CorpusError, match=r"unknown column name 'speeker' \(did you mean"):
        parse_columns("speeker=who")
    with pytest.raises(CorpusError, match="has no column 'Gender'"):
        prepare_table(table, tmp_path / "o3", columns=mapping | {"gender": "Gender"})


def test_a_column_mapped_to_nothing_is_ignored(tmp_path):
    fold_of = {"s1": 1, "s2": 1, "s3": 2, "s4": 2, "s5": 3, "s6": 3}
    rows = good_rows(
        tmp_path / "data",
        fold=lambda speaker, take: fold_of[speaker],
        split=lambda speaker, take: SPLIT_OF.get(speaker, "test"),
    )
    table = write_table(tmp_path / "data/t.csv", rows)
    with pytest.raises(CorpusError, match="both a split and a fold column"):
        prepare_table(table, tmp_path / "out")
    prepared = prepare_table(table, tmp_path / "out", columns=parse_columns("fold="))
    assert [fold.name for fold in prepared.folds] == ["given"]


def test_no_speaker_needs_a_choice_and_utterance_folds_are_recorded_as_speaker_dependent(
    tmp_path,
):
    rows = [{"path": row["path"], "label": row["label"]} for row in good_rows(tmp_path / "data")]
    table = write_table(tmp_path / "data/t.csv", rows)
    with pytest.raises(CorpusError) as error:
        prepare_table(table, tmp_path / "out")
    assert str(error.value) == (
        "no speaker is known, so speaker-independent folds cannot be made: name it with "
        "--columns speaker=<column>, or pass --split-by utterance for folds over utterances "
        "(speaker-dependent: scores then overstate how well a model does on new speakers)"
    )
    options = OwnDataOptions(split_by="utterance", folds_k=3)
    prepared = prepare_table(table, tmp_path / "out", options=options)
    assert len(prepared.folds) == 3
    for fold in prepared.folds:
        assert len(fold.test) == 12 and len(set(fold.train) | set(fold.dev) | set(fold.test)) == 36
    leakage = (
        "protocol utterance-kfold is not speaker-independent: 3 of 3 folds share speakers "
        "between train and test (fold1: 1, Unknown); test scores overstate how well a model "
        "does on speakers it has never heard"
    )
    assert prepared.speaker_leakage == leakage
    assert read_prepared(tmp_path / "out").speaker_leakage == leakage
    assert json.loads((tmp_path / "out/folds.json").read_text())["speaker_leakage"] == leakage
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert (summary["speaker_independent"], summary["warnings"]) == (False, [leakage])
    assert summary["folds"][0]["shared_speakers"] == {
        "train_test": 1,
        "train_dev": 1,
        "dev_test": 1,
    }
    text = (tmp_path / "out/summary.txt").read_text()
    assert "  fold1: train-test 1, train-dev 1, dev-test 1\n" in text
    assert text.endswith(f"warning: {leakage}\n")


def test_cli_prepares_a_table_and_refuses_misplaced_options(tmp_path):
    table = write_table(tmp_path / "data/clips.csv", good_rows(tmp_path / "data"))
    out = tmp_path / "prepared/mine"
    args = ["prepare", "table", "--manifest", str(table), "--out", str(out), "--folds-k", "3"]
    result = runner.invoke(app, [*args, "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "leakage check: no speaker in two of train, dev and test of any fold\n" in result.stdout
    assert json.loads((out / "labels.json").read_text()) == ["angry", "neutral", "sad"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol_description"] == (
        "3 speaker-independent folds stratified by label, dev speakers drawn from the training "
        "speakers (seed 7)"
    )
    clip = tmp_path / "data/clips/s1_sad_1.wav"
    for bad, message in [
        (["prepare", "table", "--root", str(tmp_path)],
         "prepare table: give the table with --manifest (no --root, no --speaker-pattern)"),
        (["prepare", "emodb", "--root", str(tmp_path), "--folds-k", "3"],
         "--folds-k: only for table and folder corpora"),
        ([*args, "--protocol", "paper"],
         "--protocol: table and folder folds come from --split-by and --folds-k"),
        ([*args, "--split-by", "speakers"], "--split-by 'speakers': choose speaker or utterance"),
        ([*args, "--folds-k", "1"], "--folds-k 1: k-fold needs at least 2 folds"),
        (["prepare", "table", "--manifest", str(tmp_path / "none.csv")],
         f"table {tmp_path / 'none.csv'} does not exist"),
        (["prepare", "table", "--manifest", str(clip)],
         f"{clip}: unknown table format '.wav'; use one of .csv, .tsv, .tab, .jsonl, .ndjson, "
         ".parquet, .pq"),
    ]:  # fmt: skip
        result = runner.invoke(app, bad)
        assert result.exit_code == 2, result.output
        assert result.stderr == f"error: {message}\n"
