"""`RunDir`: a run folder written by earlier versions (the layout spelled out here by hand)
reads unchanged; a missing or damaged config or results file is one line naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.config import ConfigError
from peft_ser.runs.layout import RunDir
from peft_ser.utils.errors import UserError

OLD_CONFIG = {
    "model": {"backbone": "tiny-wavlm", "method": "frozen", "labels": ["Neutral", "Angry"]},
    "data": {"corpus": "prepared/tones", "folds": ["fold 1", "fold2"]},
    "optim": {"epochs": 2},
    "output_dir": "runs/old",
    "seed": 3,
}
"""A config as an earlier version wrote it: the keys of its day only (newer keys default)."""


@pytest.fixture
def old_run(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A run folder in the layout runs have always had: one fold complete (with a model whose
    fold name needed a safe folder name), one still training."""
    run = tmp_path / "old"
    (run / "fold-fold_1").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(OLD_CONFIG, sort_keys=False))
    shutil.copytree(tiny_model_dir, run / "fold-fold_1" / "model")
    (run / "fold-fold_1" / "results.json").write_text(json.dumps({"fold": "fold 1", "test": {}}))
    (run / "fold-fold2" / "checkpoints" / "epoch-001").mkdir(parents=True)
    (run / "fold-fold2" / "last.json").write_text(json.dumps({"dir": "epoch-001"}))
    return run


def test_an_old_run_folder_reads_unchanged(old_run: Path) -> None:
    run = RunDir(old_run)
    assert run.is_run and not run.complete
    config = run.read_config()
    assert (config.seed, config.optim.epochs, config.data.folds) == (3, 2, ["fold 1", "fold2"])
    assert config.model.labels == ["Neutral", "Angry"]
    assert run.read_config_document() == OLD_CONFIG
    done, training = run.fold("fold 1"), run.fold("fold2")
    assert done.path == old_run / "fold-fold_1" and done.model == old_run / "fold-fold_1/model"
    assert done.complete and done.has_model
    assert not training.complete and not training.has_model
    assert [fold.path.name for fold in run.fold_dirs()] == ["fold-fold2", "fold-fold_1"]
    assert run.fold_results() == [{"fold": "fold 1", "test": {}}]
    assert run.saved_models() == [old_run / "fold-fold_1" / "model"]
    assert run.bad_audio == old_run / "bad_audio.csv"
    assert run.evaluation == old_run / "evaluation"
    assert done.tensorboard == old_run / "tensorboard" / "fold-fold_1"
    (old_run / "results.json").write_text(json.dumps({"folds": [{"fold": "a"}], "overall": {}}))
    assert run.complete and run.fold_results() == [{"fold": "a"}]


def test_writing_the_config_round_trips(old_run: Path, tmp_path: Path) -> None:
    config = RunDir(old_run).read_config()
    copy = RunDir(tmp_path / "new")
    copy.path.mkdir()
    copy.write_config(config)
    assert copy.read_config() == config


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "config file does not exist"),
        ("data:\n  folds: [1, 2\n", "invalid YAML"),
        ("data: {corpus: x}\noptim:\n  epochs: -1\n", "optim.epochs: Input should be greater"),
        ("- a list\n", "a run config is a mapping of sections"),
    ],
)
def test_a_missing_or_damaged_config_is_one_line(
    tmp_path: Path, text: str | None, problem: str
) -> None:
    path = tmp_path / "config.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as error:
        RunDir(tmp_path).read_config()
    message = str(error.value)
    assert f"{path}" in message and problem in message and "\n" not in message


def test_evaluate_names_a_damaged_run_config(old_run: Path) -> None:
    (old_run / "config.yaml").write_text("model: {backbone: [\n")
    result = CliRunner().invoke(app, ["evaluate", str(old_run)])
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {old_run / 'config.yaml'}:") and "invalid YAML" in line


@pytest.mark.parametrize("text", ["{not json", json.dumps({"overall": {}}), "[1, 2]"])
def test_damaged_results_are_one_line(old_run: Path, text: str) -> None:
    (old_run / "results.json").write_text(text)
    with pytest.raises(UserError, match=r"results\.json: not a") as error:
        RunDir(old_run).fold_results()
    assert "\n" not in str(error.value)
