"""Experiment trackers (`report_to`): MLflow's local file store receives each fold's
configuration, per-epoch metrics, test scores and pictures; a missing tracker package is one
line before anything is trained; TensorBoard stays the default and can be turned off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _tones import tiny_run

import peft_ser.training.reporting as reporting
from peft_ser.training import train
from peft_ser.training.reporting import TrackerError


def _mlflow_runs(store: Path) -> list[Any]:
    mlflow = pytest.importorskip("mlflow")
    client = mlflow.MlflowClient(tracking_uri=f"file:{store}")
    experiment = client.get_experiment_by_name("peft-ser")
    return [(client, run) for run in client.search_runs([experiment.experiment_id])]


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local MLflow file store that runs report to (skipped without MLflow)."""
    pytest.importorskip("mlflow")
    store = tmp_path / "mlruns"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{store}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for a database else
    return store


@pytest.mark.slow
def test_a_run_reports_its_epochs_and_test_scores_to_a_local_mlflow_store(
    corpus: Path, tmp_path: Path, mlflow_store: Path
) -> None:
    store = mlflow_store
    out = tmp_path / "run"
    config = tiny_run(corpus, out, **{"optim.epochs": 2, "report_to": ["mlflow"]})
    fold = train(config).folds[0]
    ((client, run),) = _mlflow_runs(store)
    assert run.info.run_name == f"{out}:fold1" and run.info.status == "FINISHED"
    assert run.data.params["optim.epochs"] == "2" and run.data.params["data.folds"] == "[1]"
    dev = client.get_metric_history(run.info.run_id, "dev_uar")
    assert [(m.step, m.value) for m in dev] == [(r["epoch"], r["dev_uar"]) for r in fold["history"]]
    assert run.data.metrics["test_uar"] == pytest.approx(fold["test"]["uar"])
    assert run.data.metrics["test_macro_f1"] == pytest.approx(fold["test"]["macro_f1"])
    pictures = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert {"confusion.png", "learning_curves.png"} <= pictures
    assert not (out / "tensorboard").exists()


def test_tensorboard_is_the_default_and_none_is_an_empty_list(corpus: Path, tmp_path: Path) -> None:
    assert tiny_run(corpus, tmp_path / "a").report_to == ["tensorboard"]
    train(tiny_run(corpus, tmp_path / "off", **{"optim.epochs": 1, "report_to": []}))
    assert not (tmp_path / "off" / "tensorboard").exists()


def test_a_tracker_whose_package_is_missing_is_one_line_before_training(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporting.imports, "is_wandb_available", lambda: False)
    config = tiny_run(corpus, tmp_path / "run", **{"report_to": ["tensorboard", "wandb"]})
    with pytest.raises(TrackerError) as refused:
        train(config)
    assert (
        str(refused.value)
        == "report_to wandb: the wandb package is not installed (pip install wandb)"
    )
    assert not (tmp_path / "run").exists()


def test_an_unknown_tracker_is_refused_by_the_config(corpus: Path, tmp_path: Path) -> None:
    from peft_ser.config import ConfigError

    with pytest.raises(ConfigError, match=r"report_to\.0: Input should be 'tensorboard'"):
        tiny_run(corpus, tmp_path / "run", **{"report_to": ["neptune"]})


@pytest.mark.slow
def test_a_resumed_fold_reports_every_epoch_to_its_new_tracker_run(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_store: Path
) -> None:
    from test_train_faults import _interrupted

    store = mlflow_store
    config = tiny_run(corpus, tmp_path / "run", **{"optim.epochs": 3, "report_to": ["mlflow"]})
    _interrupted(config, monkeypatch, epoch=2)
    fold = train(config, resume=True).folds[0]
    runs = sorted(_mlflow_runs(store), key=lambda pair: pair[1].info.start_time)
    assert [run.info.status for _, run in runs] == ["FAILED", "FINISHED"]
    client, resumed = runs[-1]
    dev = client.get_metric_history(resumed.info.run_id, "dev_uar")
    assert [(m.step, m.value) for m in dev] == [(r["epoch"], r["dev_uar"]) for r in fold["history"]]


def test_a_tracker_that_refuses_to_start_is_one_line(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow 3 refuses a file store unless asked to allow it: the run stops in one line."""
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'mlruns'}")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    config = tiny_run(corpus, tmp_path / "run", **{"report_to": ["tensorboard", "mlflow"]})
    with pytest.raises(TrackerError) as refused:
        train(config)
    message = str(refused.value)
    assert message.startswith("report_to mlflow: ") and "\n" not in message


def test_a_tracker_that_fails_mid_run_is_dropped_with_a_warning(
    corpus: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing:
        name = "failing"

        def log(self, values: dict[str, Any], step: int) -> None:
            raise ConnectionError("server gone\nmore")

        def finish(self) -> None:
            pass

    reporters = reporting.FoldReporters(
        tiny_run(corpus, tmp_path / "run", report_to=[]), None, "fold1", [], enabled=True
    )
    reporters.trackers = [Failing()]
    reporters.epoch({"epoch": 1, "dev_uar": 0.5})
    assert reporters.trackers == []
    assert "report_to failing: server gone; no longer reporting this fold to it" in caplog.text
