"""The cross-corpus matrix on two tone corpora whose label sets share two classes."""

from __future__ import annotations

import csv
from dataclasses import replace

import pytest
from _tones import make_corpus, tiny_run
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.config import ModelConfig
from peft_ser.data.manifest import PreparedCorpus, read_prepared, save_prepared
from peft_ser.evaluation.cross_corpus import cross_corpus
from peft_ser.evaluation.metrics import uar
from peft_ser.inference.predict import predict
from peft_ser.models.ser_model import build_model
from peft_ser.training.run import train
from peft_ser.utils.errors import UserError

pytestmark = pytest.mark.slow  # trains a run and scores it on both corpora

B_LABELS = ["Angry", "Neutral", "Fearful"]


def corpus_b(a_dir, out):
    """Corpus A's clips relabelled: Sad becomes Fearful, Happy is dropped, and half of the
    Angry clips too, so it has Neutral 12, Angry 6, Fearful 12."""
    a = read_prepared(a_dir)
    relabelled = [replace(u, label="Fearful") if u.label == "Sad" else u for u in a.manifest]
    angry = [u.key for u in relabelled if u.label == "Angry"]
    kept = [u for u in relabelled if u.label != "Happy" and u.key not in angry[::2]]
    keys = {u.key for u in kept}
    folds = [
        replace(f, **{s: [k for k in getattr(f, s) if k in keys] for s in ("train", "dev", "test")})
        for f in a.folds
    ]
    save_prepared(out, PreparedCorpus(kept, folds, B_LABELS))
    return out


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("xc")
    a = make_corpus(root / "a")
    b = corpus_b(a, root / "b" / "prepared")
    run = train(tiny_run(a, root / "run-a", **{"optim.epochs": 2})).run_dir
    config = ModelConfig.model_validate(
        {"backbone": "tiny-wavlm", "head_dim": 8, "labels": B_LABELS}
    )
    model_b = build_model(config).save(root / "model-b")
    return {"a": a, "b": b, "run": run, "model_b": model_b}


def test_matrix_over_runs_and_models(sources, tmp_path):
    a, b, run, model_b = (sources[k] for k in ("a", "b", "run", "model_b"))
    document = cross_corpus([run, model_b], [a, b], tmp_path, balance=True, seed=3)
    matrix = document["matrix"]
    assert list(matrix) == ["run-a", "model-b"] and list(matrix["run-a"]) == ["a", "b"]
    assert matrix["run-a"]["a"]["shared_classes"] == ["Neutral", "Angry", "Sad", "Happy"]
    # model-b (Angry, Neutral, Fearful) on corpus a shares Angry and Neutral
    assert matrix["model-b"]["a"]["shared_classes"] == ["Angry", "Neutral"]
    # balanced: corpus b's Neutral (12) and Fearful (12) cut to its 6 Angry clips
    assert matrix["run-a"]["b"]["per_class"] == {"Neutral": 6, "Angry": 6}
    assert matrix["model-b"]["b"]["per_class"] == {"Angry": 6, "Neutral": 6, "Fearful": 6}
    assert matrix["run-a"]["a"]["n"] == 48
    with open(tmp_path / "matrix.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["train", "a", "b"] and len(rows) == 3
    assert float(rows[2][1]) == pytest.approx(matrix["model-b"]["a"]["uar"], abs=1e-4)
    assert (tmp_path / "matrix.png").stat().st_size > 0


def test_cell_agrees_with_predict_restricted_to_shared_classes(sources, tmp_path):
    a, model_b = sources["a"], sources["model_b"]
    document = cross_corpus([model_b], [a], tmp_path)
    prepared = read_prepared(a)
    shared = ["Angry", "Neutral"]
    clips = [u for u in prepared.manifest if u.label in shared]
    predictions = predict([u.path for u in clips], model=model_b)
    chosen = [max(shared, key=p.probabilities.__getitem__) for p in predictions]
    expected = uar([shared.index(u.label) for u in clips], [shared.index(c) for c in chosen])
    assert document["matrix"]["model-b"]["a"]["uar"] == pytest.approx(expected)
    assert document["matrix"]["model-b"]["a"]["n"] == 24


def test_cli_prints_the_matrix_and_refuses_bad_sources(sources, tmp_path):
    a, b, model_b = sources["a"], sources["b"], sources["model_b"]
    result = CliRunner().invoke(
        app, ["cross-corpus", "--train", str(model_b), "--test", f"{a},{b}", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].split() == ["UAR", "a", "b"]
    with pytest.raises(UserError, match="neither a saved model folder nor a run directory"):
        cross_corpus([tmp_path], [a], tmp_path / "x")
