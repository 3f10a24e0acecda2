"""`evaluate` and `cross-corpus` on each kind of source: a run folder, a saved model folder and
a zoo name score the same model the same way; anything else is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from _tones import tiny_run
from typer.testing import CliRunner

from peft_ser import zoo
from peft_ser.cli import app
from peft_ser.evaluation import evaluate
from peft_ser.evaluation.cross_corpus import cross_corpus
from peft_ser.models.ser_model import SERModel
from peft_ser.training import RunResult, train
from peft_ser.utils.errors import UserError

ZOO_NAME = "whisper-tiny-lora-16-conv"
SHARED = ("n", "uar", "accuracy", "macro_f1", "recall", "uar_ci95", "uar_gap")


@pytest.fixture(scope="module")
def trained(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunResult]:
    out = tmp_path_factory.mktemp("sources") / "run"
    return out, train(tiny_run(corpus, out, **{"data.folds": "1,2", "optim.epochs": 1}))


@pytest.fixture
def zoo_serves_fold1(trained: tuple[Path, RunResult], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The zoo name loads fold1's model (no download): a zoo model is scored as a folder is."""
    model = trained[0] / "fold-fold1" / "model"

    def load_zoo_model(name: str, *args: Any, **kwargs: Any) -> SERModel:
        assert name == ZOO_NAME
        return SERModel.load(model)

    monkeypatch.setattr(zoo, "load_zoo_model", load_zoo_model)
    return model


def _same(first: dict[str, Any], second: dict[str, Any]) -> None:
    assert first["confusion"] == second["confusion"]
    for key in SHARED:
        assert first[key] == pytest.approx(second[key]), key


def test_a_run_scores_each_fold_by_its_model_as_training_tested_it(trained) -> None:
    run, result = trained
    scored = evaluate(run)
    assert [fold["fold"] for fold in scored["folds"]] == ["fold1", "fold2"]
    for fold, tested in zip(scored["folds"], result.folds, strict=True):
        _same(fold, tested["test"])
        assert fold["non_finite_outputs"] == 0 and "loss" not in fold
    assert (run / "evaluation" / "confusion-fold1.png").stat().st_size > 0


def test_a_model_folder_and_a_zoo_name_score_every_fold_of_the_corpus(
    trained, corpus: Path, zoo_serves_fold1: Path, tmp_path: Path, monkeypatch
) -> None:
    _, result = trained
    by_folder = evaluate(zoo_serves_fold1, corpus)
    assert [fold["fold"] for fold in by_folder["folds"]] == ["fold1", "fold2"]
    _same(by_folder["folds"][0], result.folds[0]["test"])  # the fold it was trained for
    assert (zoo_serves_fold1 / "evaluation" / "metrics.json").is_file()
    monkeypatch.chdir(tmp_path)
    by_name = evaluate(ZOO_NAME, corpus, folds=["fold1"])
    (fold,) = by_name["folds"]
    _same(fold, by_folder["folds"][0])
    written = json.loads((tmp_path / "evaluation" / ZOO_NAME / "metrics.json").read_text())
    assert written["folds"][0]["uar"] == fold["uar"]


def test_cross_corpus_takes_runs_folders_and_zoo_names(
    trained, corpus: Path, zoo_serves_fold1: Path, tmp_path: Path
) -> None:
    run, _ = trained
    matrix = cross_corpus([run, zoo_serves_fold1, ZOO_NAME], [corpus], tmp_path)["matrix"]
    assert list(matrix) == ["run", "fold-fold1", ZOO_NAME]
    (tones,) = matrix["run"]  # the corpus, named after its folder
    cell = matrix["run"][tones]
    assert len(cell["uar_per_model"]) == 2 and cell["n"] == 48
    assert cell["uar_per_model"][0] == matrix["fold-fold1"][tones]["uar"]
    assert matrix[ZOO_NAME][tones]["uar"] == matrix["fold-fold1"][tones]["uar"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing", "missing: no such folder, and no zoo model of that name; give a run"),
        ("whisper-tiny-lora-16", "(did you mean 'whisper-tiny-lora-16-conv'?)"),
        ("notes.txt", "notes.txt: is a file; give a run directory, a saved model or a zoo name"),
    ],
)
def test_a_source_that_is_none_of_these_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a model")
    for command in (["evaluate", source], ["cross-corpus", "--train", source, "--test", "x"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and message in line


def test_one_model_needs_a_corpus(zoo_serves_fold1: Path) -> None:
    with pytest.raises(UserError, match="needs a prepared corpus"):
        evaluate(zoo_serves_fold1)
    with pytest.raises(UserError, match=f"{ZOO_NAME}: evaluating a saved model or a zoo model"):
        evaluate(ZOO_NAME)


def test_evaluate_prints_the_table_train_prints_and_json_on_request(trained, tmp_path) -> None:
    run, result = trained
    out = tmp_path / "scored"
    table = CliRunner().invoke(app, ["evaluate", str(run), "--output-dir", str(out)])
    assert table.exit_code == 0, table.output
    printed = table.stdout.splitlines()
    assert printed[0] == f"evaluated: {run} | split: test"
    trained_lines = result.summary.splitlines()
    header = next(line for line in trained_lines if line.startswith("fold "))
    # the training's table less its epoch and dev columns (8 + 9 characters after the fold's 12)
    rows = [row for row in trained_lines if row.startswith(("fold1 ", "fold2 "))]
    for line in [header, *rows]:
        assert line[:12] + line[29:] in printed
    means = [line for line in trained_lines if " ± " in line]
    assert means and all(line in printed for line in means)
    assert printed[-1] == f"results: {out / 'metrics.json'}"
    dumped = CliRunner().invoke(
        app, ["evaluate", str(run), "--output-dir", str(out), "--format", "json"]
    )
    assert json.loads(dumped.stdout)["uar"]["mean"] == pytest.approx(
        result.overall["mean_std"]["uar"]["mean"]
    )
    refused = CliRunner().invoke(app, ["evaluate", str(run), "--format", "xml"])
    assert refused.exit_code == 2 and "xml" in refused.output
