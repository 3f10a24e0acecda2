"""`peft-ser prepare` / `preprocess`: outputs, printed summary, exit codes, help."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from _layouts import build_emodb, build_ravdess, tone
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
    assert summary["warnings"] == []
    assert "warning" not in result.output


def one_line_error(args: list[str]) -> str:
    """The single stderr line of a command that must fail with exit status 2, no traceback
    (besides the progress bar, which redraws itself with carriage returns)."""
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = [line for line in result.stderr.split("\n") if line and "\r" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0].removeprefix("error: ")


def test_nothing_usable_is_one_error_line_with_report(tmp_path):
    tone(tmp_path / "in/wav/03a01Aa.wav")
    out = tmp_path / "out"
    message = one_line_error(
        ["prepare", "emodb", "--root", str(tmp_path / "in"), "--out", str(out)]
    )
    assert message == (
        f"no usable utterance of EmoDB under {tmp_path / 'in'} (1 excluded; see {out}/report.csv)"
    )
    assert "outside_label_set" in (out / "report.csv").read_text()


def test_no_possible_fold_is_one_error_line(tmp_path):
    for speaker in ("03", "08"):
        tone(tmp_path / f"in/wav/{speaker}a01Wa.wav")
    out = tmp_path / "out"
    message = one_line_error(
        ["prepare", "emodb", "--root", str(tmp_path / "in"), "--out", str(out)]
    )
    assert message.startswith(
        "protocol paper: only 2 speakers (03, 08): a speaker-independent fold needs 3, one each "
        "for train, dev and test; no fold can be made from the 2 usable utterances of EmoDB"
    )
    assert not (out / "manifest.csv").exists() and (out / "report.csv").exists()


def test_wrong_root_names_expected_layout(tmp_path):
    message = one_line_error(["prepare", "crema-d", "--root", str(tmp_path)])
    assert message == (
        f"{tmp_path} does not look like CREMA-D: expected AudioWAV/<actor>_<sentence>_<emotion>"
        "_<level>.wav, processedResults/summaryTable.csv"
    )


def test_missing_root_and_file_root_are_named(tmp_path):
    missing = tmp_path / "no such"
    assert one_line_error(["prepare", "emodb", "--root", str(missing)]) == (
        f"corpus root {missing} does not exist"
    )
    (tmp_path / "f.txt").write_text("x")
    assert one_line_error(["prepare", "emodb", "--root", str(tmp_path / "f.txt")]) == (
        f"corpus root {tmp_path / 'f.txt'} is a file, not a folder"
    )


@pytest.mark.parametrize(
    ("name", "hint"),
    [("iemocapp", " (did you mean 'iemocap'?)"), ("timit", ""), ("msp", "")],
)
def test_unknown_corpus_suggests_a_name(tmp_path, name, hint):
    assert one_line_error(["prepare", name, "--root", str(tmp_path)]) == (
        f"unknown corpus {name!r}{hint}; choose one of "
        "iemocap, crema-d, msp-improv, msp-podcast, ravdess, emodb, meld, "
        "or table or folder for your own data"
    )


@pytest.mark.parametrize("name", ["EmoDB", "EMODB", "emo_db", "Emo-DB"])
def test_corpus_names_in_any_spelling(tmp_path, name):
    build_emodb(tmp_path / "in")
    result = runner.invoke(
        app, ["prepare", name, "--root", str(tmp_path / "in"), "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o/summary.json").read_text())["corpus"] == "emodb"


def test_incomplete_corpus_prints_and_records_the_warning(tmp_path):
    root = build_ravdess(tmp_path / "in")
    for actor in range(5, 25):
        shutil.rmtree(root / f"Actor_{actor:02d}")
    out = tmp_path / "out"
    result = runner.invoke(app, ["prepare", "ravdess", "--root", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    warning = "protocol paper: only 4 speakers (01, 02, 03, 04), made 4 folds instead of 5"
    assert f"warning: {warning}\n" in result.stdout
    assert (out / "summary.txt").read_text().endswith(f"warning: {warning}\n")
    assert json.loads((out / "summary.json").read_text())["warnings"] == [warning]


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


def test_preprocess_reports_reasons_of_failures(tmp_path):
    build_emodb(tmp_path / "in")
    runner.invoke(
        app, ["prepare", "emodb", "--root", str(tmp_path / "in"), "--out", str(tmp_path / "p")]
    )
    nan = np.zeros(100, dtype=np.float32)
    nan[[3, 50]] = np.nan
    sf.write(tmp_path / "in/wav/03a01Wa.wav", nan, 16000, subtype="FLOAT")
    (tmp_path / "in/wav/08a01Wa.wav").unlink()
    result = runner.invoke(app, ["preprocess", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert "decoded 18, already cached 0, failed 2 (missing_audio 1, non_finite_audio 1)\n" in (
        result.stdout
    )
    assert result.stderr.splitlines()[-2:] == [
        f"  non_finite_audio: {tmp_path}/in/wav/03a01Wa.wav: "
        "2 of 100 samples are not finite (NaN or ±inf)",
        f"  missing_audio: {tmp_path}/in/wav/08a01Wa.wav: file does not exist",
    ]


def test_preprocess_of_a_raw_corpus_says_how_to_prepare_it(tmp_path):
    build_emodb(tmp_path / "in")
    assert one_line_error(["preprocess", str(tmp_path / "in")]) == (
        f"{tmp_path / 'in'} is not a prepared corpus (no manifest.csv); it looks like raw EmoDB: "
        f"prepare it first with `peft-ser prepare emodb --root {tmp_path / 'in'} "
        "--out prepared/emodb`"
    )
