"""Typed table cells: one speaker however its number is written, labels differing only in
case or whitespace one class, and cells that are no single text or number refused with
their row and column, in every table format."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from _clips import FORMATS, report, speakers_by_split, tone, write_table
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.corpora import CorpusError, OwnDataOptions, prepare_table
from peft_ser.corpora.cells import identifier, text_cell

runner = CliRunner()
SPELLINGS = {
    # how each format may write the speakers 1..6 (cycled over a speaker's rows)
    "csv": (lambda n: str(n), lambda n: f"{n}.0", lambda n: f" {n} ", lambda n: f"{n}.00"),
    "tsv": (lambda n: str(n), lambda n: f"{n}.0", lambda n: f"+{n}", lambda n: f"{n}e0"),
    "jsonl": (lambda n: n, lambda n: float(n), lambda n: str(n), lambda n: f"{n}.0"),
    "parquet": (lambda n: float(n),),  # one type per column: a float column
}


def numbered_rows(root, fmt, labels=("calm", "angry")):
    """Two clips per speaker 1..6 and label, the speaker spelled in each of ``fmt``'s ways."""
    rows, spellings = [], SPELLINGS[fmt]
    for speaker in range(1, 7):
        for index, (label, take) in enumerate((lab, t) for lab in labels for t in (1, 2)):
            path = tone(root / f"clips/{speaker}_{label}_{take}.wav")
            spell = spellings[(speaker + index) % len(spellings)]
            rows.append({"path": str(path), "label": label, "speaker": spell(speaker)})
    return rows


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_numeric_speaker_is_one_speaker_however_it_is_written(tmp_path, fmt):
    table = write_table(tmp_path / f"clips.{fmt}", numbered_rows(tmp_path, fmt))
    prepared = prepare_table(table, tmp_path / "out")
    assert {u.speaker for u in prepared.manifest} == {"1", "2", "3", "4", "5", "6"}
    assert prepared.speaker_leakage is None
    for train, dev, test in speakers_by_split(prepared):
        assert not (set(train) & set(dev) or set(train) & set(test) or set(dev) & set(test))
    summary = (tmp_path / "out/summary.txt").read_text()
    assert "leakage check: no speaker in two of train, dev and test of any fold" in summary


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3, "3"), (3.0, "3"), ("3", "3"), ("3.0", "3"), (" 3 ", "3"), ("+3", "3"), ("-0", "0"),
        ("3e0", "3"), (3.5, "3.5"), ("3.50", "3.5"), (".5", "0.5"), (1e20, "100000000000000000000"),
        (Decimal("3.0"), "3"), (Decimal("2.50"), "2.5"), ("007", "007"), ("01", "01"),
        ("s3", "s3"), ("nan", "nan"), ("1e999", "1e999"), (None, ""), (float("nan"), ""),
        ("", ""), ("  ", ""), ("9" * 5000, "9" * 5000),
    ],
)  # fmt: skip
def test_the_rule_of_speaker_and_label_cells(value, text):
    assert identifier(value, "speaker", "t.jsonl line 2") == text
    assert text_cell(text) == text  # the rule's output is a fixed point of it


@pytest.mark.parametrize(
    ("column", "value", "kind"),
    [
        ("label", ["calm"], "a list (['calm'])"),
        ("label", {"name": "calm"}, "an object ({'name': 'calm'})"),
        ("label", True, "a boolean (True)"),
        ("speaker", [3], "a list ([3])"),
        ("speaker", False, "a boolean (False)"),
    ],
)
def test_cells_that_are_no_single_text_or_number_are_refused_with_row_and_column(
    tmp_path, column, value, kind
):
    rows = numbered_rows(tmp_path, "jsonl")
    rows[4] = rows[4] | {column: value}
    table = write_table(tmp_path / "clips.jsonl", rows)
    result = runner.invoke(app, ["prepare", "table", "--manifest", str(table), "--out",
                                 str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: {table} line 5: the {column!r} column holds {kind}; each {column} must be one "
        "text or number (write booleans and lists as the text of the class they stand for)\n"
    )
    assert not (tmp_path / "out").exists()


def test_a_boolean_parquet_column_is_refused_at_its_first_row(tmp_path):
    rows = [
        row | {"label": index % 2 == 0}
        for index, row in enumerate(numbered_rows(tmp_path, "parquet"))
    ]
    table = write_table(tmp_path / "clips.parquet", rows)
    with pytest.raises(
        CorpusError, match=r"clips.parquet row 1: the 'label' column holds a boolean"
    ):
        prepare_table(table, tmp_path / "out")


def test_nan_and_null_cells_are_missing_values(tmp_path):
    rows = numbered_rows(tmp_path, "jsonl")
    rows[0] = rows[0] | {"label": float("nan"), "key": "nan-label"}
    rows[1] = rows[1] | {"speaker": None, "key": "no-speaker"}
    table = tmp_path / "clips.jsonl"
    table.write_text("".join(json.dumps(row) + "\n" for row in rows))  # NaN as JSON's NaN
    prepared = prepare_table(table, tmp_path / "out")
    assert report(tmp_path / "out")["nan-label"][0] == "empty_label"
    assert {u.key: u.speaker for u in prepared.manifest}["no-speaker"] == "Unknown"


def labelled_rows(root, spellings):
    """Clips of speakers s1..s6, one per (speaker, spelling) of ``spellings``."""
    return [
        {"path": str(tone(root / f"clips/s{n}_{i}.wav")), "label": label, "speaker": f"s{n}"}
        for n in range(1, 7)
        for i, label in enumerate(spellings)
    ]


CASES = ("calm", "calm", "Calm", " calm ", "CALM", "angry", "Angry ")


@pytest.mark.parametrize("fmt", FORMATS)
def test_labels_differing_only_in_case_or_whitespace_are_one_class(tmp_path, fmt):
    table = write_table(tmp_path / f"clips.{fmt}", labelled_rows(tmp_path, CASES))
    prepared = prepare_table(table, tmp_path / "out")
    assert prepared.labels == ["Angry", "calm"]  # the most frequent spelling; ties: sorted first
    assert {u.raw_label: u.label for u in prepared.manifest} == {
        "calm": "calm", "Calm": "calm", "CALM": "calm", "angry": "Angry", "Angry": "Angry"
    }  # fmt: skip
    warnings = json.loads((tmp_path / "out/summary.json").read_text())["warnings"]
    assert warnings[0] == (
        "labels that differ only in case were merged into one class: calm from 'calm' (18), "
        "'CALM' (6), 'Calm' (6); Angry from 'Angry' (6), 'angry' (6)"
    )


def test_a_label_mapping_covers_the_case_variants_and_numeric_codes(tmp_path):
    rows = labelled_rows(tmp_path, ("calm", "CALM", "angry"))
    rows += [row | {"label": 1.0} for row in labelled_rows(tmp_path / "more", ("x",))]
    table = write_table(tmp_path / "clips.jsonl", rows)
    options = OwnDataOptions(labels="calm=Relaxed,angry=Angry,1.0=One")
    prepared = prepare_table(table, tmp_path / "out", options=options)
    assert prepared.labels == ["Relaxed", "Angry", "One"]
    counts = {name: sum(u.label == name for u in prepared.manifest) for name in prepared.labels}
    assert counts == {"Relaxed": 12, "Angry": 6, "One": 6}
