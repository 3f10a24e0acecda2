"""Mistakes on the training command line: one line on stderr, exit status 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from peft_ser.cli import DEBUG_ENV, app


def _train(*arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["train", *arguments])
    return result.exit_code, result.stderr


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    code, stderr = _train("--config", str(tmp_path / "run.yaml"))
    assert code == 2
    assert _one_line(stderr) == f"error: {tmp_path / 'run.yaml'}: config file does not exist"


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("data:\n  corpus: x\n  folds: [1, 2\n")
    code, stderr = _train("--config", str(config))
    assert code == 2
    assert _one_line(stderr).startswith(f"error: {config}:4:1: invalid YAML (")


def test_an_option_error_is_not_blamed_on_the_file(tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("data: {corpus: x}\n")
    code, stderr = _train("--config", str(config), "--epochs", "0")
    assert code == 2
    assert _one_line(stderr) == (
        "error: invalid configuration: option optim.epochs: Input should be greater than or "
        "equal to 1 (got 0)"
    )


def test_an_unprepared_corpus_name_gets_the_real_prepare_command(tmp_path: Path) -> None:
    code, stderr = _train("--corpus", "iemocap", "--output-dir", str(tmp_path / "run"))
    assert code == 2
    assert "peft-ser prepare <corpus> --root <corpus folder> --out prepared/iemocap" in (
        _one_line(stderr)
    )


def test_a_raw_corpus_folder_is_recognised(tmp_path: Path) -> None:
    raw = tmp_path / "emodb"
    (raw / "wav").mkdir(parents=True)
    code, stderr = _train("--corpus", str(raw), "--output-dir", str(tmp_path / "run"))
    assert code == 2
    assert _one_line(stderr).endswith(
        f"it looks like raw EmoDB: prepare it first with "
        f"`peft-ser prepare emodb --root {raw} --out prepared/emodb`"
    )


def test_a_fold_out_of_range_lists_the_folds(corpus: Path, tmp_path: Path) -> None:
    code, stderr = _train(
        "--corpus", str(corpus), "--folds", "3", "--output-dir", str(tmp_path / "run")
    )
    assert code == 2
    assert _one_line(stderr) == (
        "error: data.folds: no fold 3; allowed: 1..2 or one of ['fold1', 'fold2']"
    )


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--backbone", "whisper-tinny", "did you mean 'whisper-tiny'?"),
        ("--method", "lroa", "did you mean 'lora'?"),
    ],
)
def test_misspelt_names_get_the_closest_name(
    corpus: Path, tmp_path: Path, option: str, value: str, expected: str
) -> None:
    code, stderr = _train(
        "--corpus", str(corpus), option, value, "--output-dir", str(tmp_path / "run")
    )
    assert code == 2
    assert expected in _one_line(stderr)


def test_evaluate_on_a_folder_that_is_no_run_or_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 2
    assert _one_line(result.stderr) == (
        f"error: {tmp_path}: neither a run directory nor a saved model"
    )


def test_debug_shows_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEBUG_ENV, "0")  # restored after the test: --debug sets it to 1
    result = CliRunner().invoke(app, ["--debug", "train", "--config", str(tmp_path / "run.yaml")])
    assert result.exit_code == 1
    assert "config file does not exist" in str(result.exception)
