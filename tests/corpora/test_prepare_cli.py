"""`peft-ser prepare` / `preprocess`: outputs, printed summary, exit codes, help."""

from __future__ import annotations

import json

from _layouts import build_emodb, tone
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.corpora import CORPORA, preprocess_corpus

runner = CliRunner()


def test_prepare_writes_every_output_and_prints_summary(tmp_path):
    build_emodb(tmp_path / "in")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["prepare", "emodb", "--root", str(tmp_path / "in"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    names = {
        "manifest.csv",
        "folds.json",
        "report.csv",
        "summary.json",
        "summary.txt",
        "labels.json",
    }
    assert {p.name for p in out.iterdir()} == names
    assert "outside_label_set: 10" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["total"]["per_label"] == {"Neutral": 10, "Angry": 10, "Sad": 0, "Happy": 0}
    assert summary["total"]["speakers"] == 10
    assert summary["excluded"] == {"outside_label_set": 10, "unlabelled_audio": 1}
    fold1 = summary["folds"][0]
    assert (fold1["train"]["speakers"], fold1["dev"]["speakers"], fold1["test"]["speakers"]) == (
        6,
        2,
        2,
    )
    assert fold1["test"]["hours"] == round(4 * 0.2 / 3600, 4)


def test_nothing_usable_exits_non_zero_with_report(tmp_path):
    tone(tmp_path / "in/wav/03a01Aa.wav")
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["prepare", "emodb", "--root", str(tmp_path / "in"), "--out", str(out)]
    )
    assert result.exit_code == 1
    assert "no usable utterance" in result.output
    assert "outside_label_set" in (out / "report.csv").read_text()


def test_wrong_root_exits_non_zero_naming_expected_layout(tmp_path):
    result = runner.invoke(app, ["prepare", "crema-d", "--root", str(tmp_path)])
    assert result.exit_code == 1
    assert "AudioWAV" in result.output and "summaryTable.csv" in result.output


def test_help_documents_every_corpus_and_option():
    result = runner.invoke(app, ["prepare", "--help"], env={"COLUMNS": "200"})
    for text in [
        *CORPORA,
        "--root",
        "--out",
        "--labels",
        "--protocol",
        "paper4+calm",
        "improvised",
    ]:
        assert text in result.output


def test_preprocess_caches_then_skips(tmp_path):
    build_emodb(tmp_path / "in")
    runner.invoke(
        app, ["prepare", "emodb", "--root", str(tmp_path / "in"), "--out", str(tmp_path / "p")]
    )
    result = runner.invoke(app, ["preprocess", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "decoded 20, already cached 0, failed 0" in result.output
    assert len(list((tmp_path / "p/audio_cache").rglob("*.npy"))) == 20
    (tmp_path / "in/wav/03a01Wa.wav").unlink()
    again = preprocess_corpus(tmp_path / "p")
    assert (again.computed, again.cached, len(again.failed)) == (0, 19, 1)
