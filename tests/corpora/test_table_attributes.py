"""Attribute values in a table corpus: parsed in every format, empty cells as missing values,
bad cells as malformed rows, a table without a label column for attributes alone, the folder
layout's refusal, and a tiny attribute training run and evaluation on a prepared table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _clips import FORMATS, report, tone, write_table
from _tones import arousal_of, tiny_run
from pydantic import ValidationError
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.config import ModelConfig
from peft_ser.corpora import CorpusError, OwnDataOptions, prepare_folder, prepare_table
from peft_ser.corpora.table import parse_columns
from peft_ser.data.manifest import read_prepared
from peft_ser.evaluation import evaluate
from peft_ser.models.ser_model import SERModel
from peft_ser.training import train

SPLIT_OF = {"s1": "train", "s2": "train", "s3": "dev", "s4": "test"}
runner = CliRunner()


def rated_rows(root, labels=("calm", "tense"), takes=3):
    """Clips of four speakers (two train, one dev, one test) with arousal ``1 + take`` and
    valence ``-0.5 × take`` (so the values show which row they came from), no dominance."""
    rows = []
    for speaker, split in SPLIT_OF.items():
        for label in labels:
            for take in range(takes):
                tone(root / "clips" / f"{speaker}_{label}_{take}.wav")
                rows.append({
                    "path": f"clips/{speaker}_{label}_{take}.wav", "label": label,
                    "speaker": speaker, "split": split, "key": f"{speaker}-{label}-{take}",
                    "Arousal": 1.0 + take, "valence": -0.5 * take,
                })  # fmt: skip
    return rows


def ratings(prepared, key):
    (utterance,) = [u for u in prepared.manifest if u.key == key]
    return utterance.arousal, utterance.valence, utterance.dominance


@pytest.mark.parametrize("fmt", FORMATS)
def test_values_are_parsed_and_an_empty_cell_is_a_missing_value(tmp_path, fmt):
    rows = rated_rows(tmp_path / "data")
    rows[0]["valence"] = None  # s1-calm-0: no valence
    table = write_table(tmp_path / f"data/t.{fmt}", rows)
    categorical = prepare_table(table, tmp_path / "cat")
    assert categorical.targets == "categorical" and categorical.attributes == ()
    assert len(categorical.manifest) == 24  # a missing value does not matter to class labels
    assert ratings(categorical, "s1-calm-0") == (1.0, None, None)
    assert ratings(categorical, "s2-tense-2") == (3.0, -1.0, None)
    options = OwnDataOptions(targets="attributes")
    rated = prepare_table(table, tmp_path / "attr", options=options)
    assert (rated.targets, rated.attributes) == ("attributes", ("arousal", "valence"))
    assert rated.attribute_scale == "as given in the table"
    assert len(rated.manifest) == 23
    assert report(tmp_path / "attr") == {
        "s1-calm-0": ("no_attribute_ratings", "needs ratings of arousal, valence")
    }
    loaded = read_prepared(tmp_path / "attr")
    assert ratings(loaded, "s3-tense-1") == (2.0, -0.5, None)
    summary = json.loads((tmp_path / "attr/summary.json").read_text())
    assert summary["headline_metric"] == "ccc"
    stats = summary["attribute_stats"]["arousal"]  # seven of the 23 rows left take 0
    assert (stats["mean"], stats["min"], stats["max"]) == (pytest.approx(47 / 23, abs=1e-4), 1, 3)
    text = (tmp_path / "attr/summary.txt").read_text()
    assert "attributes (attributes), scale as given in the table:\n  arousal    mean 2.04" in text


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_value_that_is_no_finite_number_is_a_malformed_row(tmp_path, fmt):
    rows = rated_rows(tmp_path / "data")
    rows[1]["Arousal"], rows[2]["valence"], rows[3]["valence"] = "high", "nan", "-inf"
    table = write_table(tmp_path / f"data/t.{fmt}", rows)
    prepared = prepare_table(table, tmp_path / "out", options=OwnDataOptions(targets="both"))
    assert len(prepared.manifest) == 21
    line = 1 + (fmt == "csv")  # the n-th row is the n-th line of JSON Lines, one later in CSV
    with open(tmp_path / "out/report.csv") as handle:
        excluded = handle.read().splitlines()[1:]
    assert excluded == [
        f"s1-calm-1,{table},malformed_label_row,line {line + 1}: Arousal 'high' is not a finite "
        "number",
        f"s1-calm-2,{table},malformed_label_row,line {line + 2}: valence 'nan' is not a finite "
        "number",
        f"s1-tense-0,{table},malformed_label_row,line {line + 3}: valence '-inf' is not a finite "
        "number",
    ]


def test_a_mapped_attribute_column_is_named_as_the_table_names_it(tmp_path):
    rows = [
        {key: value for key, value in row.items() if key != "Arousal"} | {"Act": row["Arousal"]}
        for row in rated_rows(tmp_path / "data")
    ]
    rows[0]["Act"] = "x"
    table = write_table(tmp_path / "data/t.tsv", rows)
    options = OwnDataOptions(targets="attributes")
    prepared = prepare_table(table, tmp_path / "out", columns=parse_columns("arousal=Act"),
                             options=options)  # fmt: skip
    assert prepared.attributes == ("arousal", "valence")
    assert report(tmp_path / "out")["s1-calm-0"] == (
        "malformed_label_row", "line 2: Act 'x' is not a finite number"
    )  # fmt: skip


def test_attributes_alone_need_no_label_column_but_classes_do(tmp_path):
    rows = [{k: v for k, v in row.items() if k != "label"} for row in rated_rows(tmp_path / "d")]
    table = write_table(tmp_path / "d/t.csv", rows)
    prepared = prepare_table(table, tmp_path / "out", options=OwnDataOptions(targets="attributes"))
    assert prepared.labels == ["none"] and len(prepared.manifest) == 24
    assert {u.label for u in prepared.manifest} == {"none"}
    assert json.loads((tmp_path / "out/targets.json").read_text())["attributes"] == [
        "arousal", "valence"
    ]  # fmt: skip
    for targets in ("categorical", "both"):
        with pytest.raises(CorpusError) as error:
            prepare_table(table, tmp_path / targets, options=OwnDataOptions(targets=targets))
        assert str(error.value) == (
            f"{table}: no 'label' column; its columns are ['path', 'speaker', 'split', 'key', "
            "'Arousal', 'valence']: map one with --columns label=<column>; or train its "
            "attribute values alone with --targets attributes"
        )


def test_an_empty_label_is_kept_for_attributes_alone_and_excluded_for_classes(tmp_path):
    rows = rated_rows(tmp_path / "data")
    rows[0]["label"] = ""
    table = write_table(tmp_path / "data/t.csv", rows)
    rated = prepare_table(table, tmp_path / "attr", options=OwnDataOptions(targets="attributes"))
    assert rated.labels == ["calm", "tense", "none"] and len(rated.manifest) == 24
    both = prepare_table(table, tmp_path / "both", options=OwnDataOptions(targets="both"))
    assert both.labels == ["calm", "tense"] and len(both.manifest) == 23
    assert report(tmp_path / "both")["s1-calm-0"] == ("empty_label", "line 2: the label is empty")


def test_attribute_targets_need_an_attribute_column(tmp_path):
    rows = [{k: v for k, v in row.items() if k not in ("Arousal", "valence")}
            for row in rated_rows(tmp_path / "data")]  # fmt: skip
    table = write_table(tmp_path / "data/t.csv", rows)
    with pytest.raises(CorpusError) as error:
        prepare_table(table, tmp_path / "out", options=OwnDataOptions(targets="both"))
    assert str(error.value) == (
        f"--targets both: {table} has no arousal, valence or dominance column; its columns "
        "are ['path', 'label', 'speaker', 'split', 'key']: map one with --columns arousal=<column>"
    )
    with pytest.raises(CorpusError, match="--targets 'arousal': choose one of categorical"):
        prepare_table(table, tmp_path / "out", options=OwnDataOptions(targets="arousal"))


def test_cli_prepares_a_table_for_attributes_and_refuses_them_for_a_folder(tmp_path):
    table = write_table(tmp_path / "data/t.csv", rated_rows(tmp_path / "data"))
    out = tmp_path / "prepared"
    args = ["prepare", "table", "--manifest", str(table), "--out", str(out)]
    result = runner.invoke(app, [*args, "--targets", "attributes"])
    assert result.exit_code == 0, result.output
    assert "attributes (attributes), scale as given in the table:" in result.stdout
    assert read_prepared(out).attributes == ("arousal", "valence")
    refusal = (
        "the folder layout has no attribute values (its labels are folder names); list the "
        "clips with arousal, valence or dominance columns in a table and run prepare table "
        "--manifest <table> --targets attributes"
    )
    for targets in ("attributes", "arousal"):
        result = runner.invoke(
            app, ["prepare", "folder", "--root", str(tmp_path / "data"), "--targets", targets]
        )
        assert result.exit_code == 2
        assert result.output.strip().splitlines() == [f"error: --targets {targets}: {refusal}"]
    with pytest.raises(CorpusError, match="the folder layout has no attribute values"):
        prepare_folder(tmp_path / "data", options=OwnDataOptions(targets="both"))


def test_an_attribute_model_trains_on_a_table_without_labels(tmp_path):
    """Pitch sets arousal as in the tone corpus; two epochs show the whole path works."""
    rng = np.random.default_rng(3)
    rows = []
    for speaker, split in SPLIT_OF.items():
        for take in range(6):
            pitch = 150.0 * 2 ** rng.uniform(0.0, 3.0)
            tone(tmp_path / f"{speaker}_{take}.wav", seconds=0.6, hz=pitch)
            rows.append({"path": f"{speaker}_{take}.wav", "speaker": speaker, "split": split,
                         "arousal": arousal_of(pitch)})  # fmt: skip
    table = write_table(tmp_path / "clips.csv", rows)
    prepare_table(table, tmp_path / "prepared", options=OwnDataOptions(targets="attributes"))
    result = train(tiny_run(tmp_path / "prepared", tmp_path / "run", **{"optim.epochs": 2}))
    (fold,) = result.folds
    assert fold["test"]["n"] == 6 and set(fold["test"]) >= {"ccc_arousal", "rmse_arousal"}
    assert "uar" not in fold["test"] and "dev_ccc" in fold
    predictions = (tmp_path / "run/fold-given/predictions.csv").read_text().splitlines()
    assert predictions[0] == "key,label,arousal,predicted_arousal" and len(predictions) == 7
    # The run's config and the saved model hold one class, "none", and load again.
    (scored,) = evaluate(tmp_path / "run")["folds"]
    assert scored["ccc_arousal"] == pytest.approx(fold["test"]["ccc_arousal"], abs=1e-5)
    assert SERModel.load(tmp_path / "run/fold-given/model").labels == ["none"]
    with pytest.raises(ValidationError, match="a classifier needs at least 2 classes"):
        ModelConfig.model_validate({"backbone": "tiny-wavlm", "labels": ["none"]})
