"""`evaluate` on attribute and multitask models: the metrics training reported for the test
split, the files it wrote, a saved model on another split, and a corpus without ratings."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from _tones import make_attribute_corpus, tiny_run
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.evaluation import evaluate
from peft_ser.training.run import RunResult, train
from peft_ser.utils.errors import UserError

SCALARS = ("ccc", "ccc_arousal", "pearson_valence", "rmse_dominance")


@pytest.fixture(scope="module")
def attribute_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RunResult]:
    root = tmp_path_factory.mktemp("attributes")
    corpus = make_attribute_corpus(root / "c", "attributes")
    return root, train(tiny_run(corpus, root / "run", **{"optim.epochs": 2}))


def test_a_run_scores_as_its_training_tested_it(attribute_run):
    root, result = attribute_run
    scored = evaluate(root / "run")
    (fold,) = scored["folds"]
    tested = result.folds[0]["test"]
    for name in SCALARS:
        assert fold[name] == pytest.approx(tested[name], abs=1e-5), name
    assert fold["n"] == 12 and fold["fold"] == "fold1" and "uar" not in fold
    assert scored["overall"]["pooled"]["ccc_arousal"] == pytest.approx(
        tested["ccc_arousal"], abs=1e-5
    )
    assert scored["overall"]["mean_std"]["rmse_valence"]["std"] == 0.0
    out = root / "run/evaluation"
    trained = (root / "run/fold-fold1/predictions.csv").read_text()
    evaluated = (out / "fold-fold1/predictions.csv").read_text()
    assert evaluated.splitlines()[0] == trained.splitlines()[0]
    assert len(evaluated.splitlines()) == len(trained.splitlines()) == 13
    for name in ("fold-fold1/attributes.png", "attributes.png", "metrics.json", "metrics.csv"):
        assert (out / name).stat().st_size > 0, name
    assert not list(out.rglob("confusion*.png"))
    with open(out / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["fold"] for row in rows] == ["fold1", "mean", "std"]
    assert float(rows[0]["ccc_valence"]) == pytest.approx(tested["ccc_valence"], abs=1e-5)
    assert json.loads((out / "metrics.json").read_text())["split"] == "test"


@pytest.mark.slow
def test_a_saved_model_scores_another_split_from_the_cli(attribute_run, tmp_path):
    root, _ = attribute_run
    model = root / "run/fold-fold1/model"
    args = ["evaluate", str(model), "--corpus", str(root / "c/prepared"), "--split", "dev",
            "--format", "json"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--output-dir", str(tmp_path / "dev")])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed) >= {"ccc", "ccc_arousal", "pearson_arousal", "rmse_arousal"}
    with open(tmp_path / "dev/fold-fold1/predictions.csv", newline="") as handle:
        keys = [row["key"] for row in csv.DictReader(handle)]
    assert len(keys) == 12 and {key.split("_")[0] for key in keys} == {"s1", "s2"}


def test_a_corpus_without_the_ratings_is_refused(attribute_run, tmp_path):
    root, _ = attribute_run
    corpus = make_attribute_corpus(tmp_path / "c", "categorical")
    model = root / "run/fold-fold1/model"
    with pytest.raises(UserError) as error:
        evaluate(model, corpus)
    assert str(error.value) == (
        f"{model}: the model predicts arousal, valence, dominance, but the corpus (prepared "
        "with --targets categorical) rates nothing; score it on a corpus prepared with "
        "--targets attributes or both that rates them"
    )


@pytest.mark.slow
def test_a_multitask_run_scores_classes_and_attributes(tmp_path):
    corpus = make_attribute_corpus(tmp_path / "c", "both")
    result = train(tiny_run(corpus, tmp_path / "run", **{"optim.epochs": 2}))
    (fold,) = evaluate(tmp_path / "run")["folds"]
    tested = result.folds[0]["test"]
    for name in ("uar", "macro_f1", "score", *SCALARS):
        assert fold[name] == pytest.approx(tested[name], abs=1e-5), name
    assert fold["confusion"] == tested["confusion"]
    out = tmp_path / "run/evaluation"
    for name in ("fold-fold1/confusion.png", "fold-fold1/attributes.png", "confusion.png",
                 "attributes.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    header = (out / "fold-fold1/predictions.csv").read_text().splitlines()[0]
    assert header.startswith("key,label,predicted,arousal,")
