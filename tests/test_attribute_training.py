"""Attribute and multi-task training on tones whose pitch sets the ratings, CCC against a
hand-computed example and a second implementation, and what predict returns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _tones import make_attribute_corpus, tiny_run

from peft_ser.config import ModelConfig, load_run_config
from peft_ser.data.manifest import read_prepared
from peft_ser.evaluation.metrics import concordance_cc, pearson, regression_metrics
from peft_ser.inference.files import format_predictions
from peft_ser.inference.predict import predict
from peft_ser.models.ser_model import CONFIG_FILE, SERModel, build_model
from peft_ser.models.tasks import TaskError, attribute_loss, concordance, resolve_task
from peft_ser.training.run import train

CHANCE_BOUND = 0.7
"""Of 12 test clips, an unrelated prediction reaches |r| > 0.7 with probability under 1 %,
and CCC is never above |r|."""


def test_ccc_of_hand_computed_examples():
    # means 2 and 2, variances 2/3 and 2/3, covariance 1/3: CCC = (2/3) / (4/3)
    assert concordance_cc([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    # perfectly correlated but offset by 1: 2·1.25 / (1.25 + 1.25 + 1²) = 5/7
    assert concordance_cc([1, 2, 3, 4], [2, 3, 4, 5]) == pytest.approx(5 / 7)
    assert concordance_cc([1, 2, 3], [1, 2, 3]) == pytest.approx(1.0)
    assert pearson([1, 2, 3, 4], [2, 3, 4, 5]) == pytest.approx(1.0)
    metrics = regression_metrics(np.array([[1.0], [3.0]]), np.array([[2.0], [3.0]]), ["arousal"])
    assert metrics["rmse_arousal"] == pytest.approx(np.sqrt(0.5))


def test_torch_ccc_loss_agrees_with_numpy_ccc():
    rng = np.random.default_rng(0)
    truth = rng.normal(3, 1, size=(50, 3))
    pred = 0.6 * truth + rng.normal(1, 0.7, size=(50, 3))
    expected = [concordance_cc(truth[:, a], pred[:, a]) for a in range(3)]
    got = concordance(torch.tensor(pred), torch.tensor(truth)).tolist()
    assert got == pytest.approx(expected, abs=1e-7)  # float64 on both sides: one formula
    loss = attribute_loss(torch.tensor(pred), torch.tensor(truth), "ccc")
    assert float(loss) == pytest.approx(1 - np.mean(expected), abs=1e-7)
    mse = attribute_loss(torch.tensor(pred), torch.tensor(truth), "mse")
    assert float(mse) == pytest.approx(np.mean((pred - truth) ** 2))


def test_task_follows_the_corpus_and_refuses_what_it_lacks(tmp_path):
    prepared = read_prepared(make_attribute_corpus(tmp_path, "attributes"))
    config = resolve_task(ModelConfig.model_validate({"backbone": "tiny-wavlm"}), prepared)
    assert (config.task, config.attributes) == ("attributes", ["arousal", "valence", "dominance"])
    categorical = ModelConfig.model_validate({"backbone": "tiny-wavlm", "task": "categorical"})
    with pytest.raises(TaskError, match="prepare it with --targets categorical or --targets both"):
        resolve_task(categorical, prepared)


def test_saved_model_without_task_keys_loads_as_categorical(tmp_path):
    model = build_model(ModelConfig.model_validate({"backbone": "tiny-wavlm", "head_dim": 8}))
    model.save(tmp_path)
    document = json.loads((tmp_path / CONFIG_FILE).read_text())
    del document["task"], document["attributes"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(document))
    loaded = SERModel.load(tmp_path)
    assert (loaded.layout.task, loaded.layout.width) == ("categorical", 4)


@pytest.mark.slow
def test_attribute_model_learns_pitch(tmp_path):
    corpus = make_attribute_corpus(tmp_path / "c", "attributes")
    # fp32, as `predict` computes, so the two predictions of a clip below agree
    settings = {"optim.epochs": 16, "mixed_precision": "no"}
    result = train(tiny_run(corpus, tmp_path / "run", **settings))
    run_config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert run_config["model"]["task"] == "attributes"  # followed the corpus, no setting
    test = result.folds[0]["test"]
    assert test["n"] == 12
    assert test["ccc_arousal"] > CHANCE_BOUND and test["ccc_valence"] > CHANCE_BOUND
    assert "uar" not in test and "dev_ccc" in result.folds[0]
    assert "dev CCC" in result.summary and "ccc_arousal" in result.summary
    fold = tmp_path / "run" / "fold-fold1"
    assert (fold / "attributes.png").stat().st_size > 0 and not (fold / "confusion.png").exists()
    with open(fold / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12 and "predicted_dominance" in rows[0]
    truth = [float(r["arousal"]) for r in rows]
    assert concordance_cc(truth, [float(r["predicted_arousal"]) for r in rows]) == (
        pytest.approx(test["ccc_arousal"], abs=1e-6)
    )
    (prediction,) = predict([str(tmp_path / "c" / "wav" / "s3_10.wav")], model=fold / "model")
    assert prediction.label == "" and prediction.probabilities == {}
    assert prediction.attributes is not None
    assert list(prediction.attributes) == ["arousal", "valence", "dominance"]
    assert float(rows[0]["predicted_arousal"]) == pytest.approx(
        prediction.attributes["arousal"], abs=1e-3
    )
    header = format_predictions([prediction], "csv").splitlines()[0]
    assert header == "source,window,start,end,label,arousal,valence,dominance"


@pytest.mark.slow
def test_multitask_trains_classes_and_attributes(tmp_path):
    corpus = make_attribute_corpus(tmp_path / "c", "both")
    overrides = {"optim.epochs": 2, "optim.attribute_loss": "mse", "optim.attribute_weight": 0.5}
    result = train(tiny_run(corpus, tmp_path / "run", **overrides))
    (fold,) = result.folds
    assert {"uar", "macro_f1", "ccc", "ccc_valence", "score"} <= set(fold["test"])
    assert fold["test"]["score"] == pytest.approx((fold["test"]["uar"] + fold["test"]["ccc"]) / 2)
    history = fold["history"][0]
    assert {"train_uar", "train_ccc", "train_score", "dev_ccc_arousal", "dev_score"} <= set(history)
    assert "dev score" in result.summary and "CCC aro" in result.summary
    fold_dir = tmp_path / "run" / "fold-fold1"
    assert (fold_dir / "confusion.png").is_file() and (fold_dir / "attributes.png").is_file()
    (prediction,) = predict([str(tmp_path / "c" / "wav" / "s4_11.wav")], model=fold_dir / "model")
    assert set(prediction.probabilities) == {"Neutral", "Angry", "Sad", "Happy"}
    assert prediction.attributes is not None and len(prediction.attributes) == 3


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("msp-podcast-challenge-categorical", "categorical"),
        ("msp-podcast-challenge-attributes", "attributes"),
        ("cross-corpus-iemocap", None),
    ],
)
def test_shipped_configs_load(name, task):
    config = load_run_config(Path(__file__).parent.parent / "configs" / f"{name}.yaml")
    assert config.model.task == task
