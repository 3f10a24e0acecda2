"""``optim.select_on``: the dev metric that picks the tested epoch and stops a fold early,
chosen among the metrics the task scores on dev; refused otherwise, before anything trains."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from _tones import make_attribute_corpus, tiny_run

import peft_ser.training.checkpoint as checkpoint_module
from peft_ser.config import (
    ConfigError,
    OptimConfig,
    load_run_config,
    read_config_file,
    with_defaults,
)
from peft_ser.config.selection import (
    AUTO,
    history_metrics,
    metric_label,
    selectable,
    selection_metric,
)
from peft_ser.demo.disagreement import write_disagreement_corpus
from peft_ser.evaluation.metrics import learning_curves_figure
from peft_ser.evaluation.objectives import improves
from peft_ser.runs.layout import RunDir
from peft_ser.training import train
from peft_ser.training.run import RunDirError, claim_run_dir, config_differences
from peft_ser.training.schedule import early_stop, selected_epoch

DISAGREE = [
    # dev UAR peaks first, at epoch 2; macro-F1 later, at epoch 3 (a class never predicted at
    # epoch 2 costs F1 more than recall); the loss falls to its lowest at epoch 4
    {"epoch": 1, "dev_uar": 0.50, "dev_macro_f1": 0.38, "dev_accuracy": 0.50, "dev_loss": 1.3},
    {"epoch": 2, "dev_uar": 0.75, "dev_macro_f1": 0.60, "dev_accuracy": 0.75, "dev_loss": 1.0},
    {"epoch": 3, "dev_uar": 0.75, "dev_macro_f1": 0.73, "dev_accuracy": 0.75, "dev_loss": 0.9},
    {"epoch": 4, "dev_uar": 0.50, "dev_macro_f1": 0.45, "dev_accuracy": 0.50, "dev_loss": 0.8},
    {"epoch": 5, "dev_uar": 0.60, "dev_macro_f1": 0.50, "dev_accuracy": 0.60, "dev_loss": 1.1},
]


def test_each_metric_picks_its_own_best_epoch_where_they_disagree() -> None:
    assert selected_epoch(DISAGREE, "uar") == (2, 0.75)  # a tie (epoch 3) does not beat it
    assert selected_epoch(DISAGREE, "macro_f1") == (3, 0.73)
    assert selected_epoch(DISAGREE, "loss") == (4, 0.8)  # the lowest
    assert selected_epoch(DISAGREE, "macro_f1", last=True) == (5, 0.50)
    assert early_stop(DISAGREE, "macro_f1", 2) == (
        "dev macro-F1 did not improve for 2 epochs after its best (0.730 at epoch 3)"
    )
    assert early_stop(DISAGREE, "uar", 3) == (
        "dev UAR did not improve for 3 epochs after its best (0.750 at epoch 2)"
    )
    assert early_stop(DISAGREE, "loss", 1) == (
        "dev loss did not improve for 1 epochs after its best (0.800 at epoch 4)"
    )


def test_the_loss_and_the_divergences_improve_by_falling() -> None:
    for metric in ("loss", "jsd", "kld"):
        assert improves(metric, 0.1, 0.2) and not improves(metric, 0.3, 0.2)
    for metric in ("uar", "macro_f1", "accuracy", "ccc", "ccc_valence", "score"):
        assert improves(metric, 0.3, 0.2) and not improves(metric, 0.1, 0.2)


def test_a_first_epoch_without_a_dev_score_is_tested_until_one_has_one() -> None:
    rows = [{"epoch": 1, "dev_loss": math.nan}, {"epoch": 2, "dev_loss": math.nan}]
    assert selected_epoch(rows, "loss")[0] == 1
    rows.append({"epoch": 3, "dev_loss": 5.0})
    assert selected_epoch(rows, "loss") == (3, 5.0)


def test_auto_is_each_tasks_metric_of_before() -> None:
    assert AUTO == {
        "categorical": "uar",
        "attributes": "ccc",
        "multitask": "score",
        "distribution": "jsd",
    }
    for task, metric in AUTO.items():
        assert selection_metric("auto", task, ["arousal"]) == metric
    assert OptimConfig().select_on == "auto"


@pytest.mark.parametrize(
    ("task", "allowed"),
    [
        ("categorical", "auto, uar, accuracy, macro_f1, loss"),
        ("attributes", "auto, ccc, ccc_arousal, ccc_valence, loss"),
        (
            "multitask",
            "auto, uar, accuracy, macro_f1, ccc, ccc_arousal, ccc_valence, score, loss",
        ),
        ("distribution", "auto, jsd, kld, uar, accuracy, macro_f1, loss"),
    ],
)
def test_each_task_selects_on_its_dev_columns_and_the_loss_only(task: str, allowed: str) -> None:
    attributes = ["arousal", "valence"]
    assert ", ".join(selectable(task, attributes)) == allowed
    # the dev history columns, as `Objective.row` writes them
    assert selectable(task, attributes)[1:-1] == history_metrics(task, attributes)
    for metric in selectable(task, attributes):
        selection_metric(metric, task, attributes)
    wrong = "jsd" if task != "distribution" else "ccc"
    with pytest.raises(ConfigError) as refused:
        selection_metric(wrong, task, attributes)
    assert str(refused.value) == (
        f"optim.select_on {wrong}: model.task {task} does not score it on dev; choose one of "
        f"{allowed}"
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"optim.select_on": "f1"},
            "invalid configuration: option optim.select_on: 'f1': not a dev metric; choose one "
            "of auto, uar, accuracy, macro_f1, ccc, ccc_<attribute>, score, jsd, kld, loss",
        ),
        (
            {"optim.select_on": "ccc_"},
            "invalid configuration: option optim.select_on: 'ccc_': not a dev metric",
        ),
        (
            {"optim.select_on": 3},
            "invalid configuration: option optim.select_on: Input should be a valid string",
        ),
        (
            {"optim.select_on": "macro_f1", "model.task": "attributes"},
            "invalid configuration: optim.select_on macro_f1: model.task attributes does not "
            "score it on dev; choose one of auto, ccc, ccc_<attribute>, loss",
        ),
        (
            {"optim.select_on": "ccc_valence", "model.task": "distribution"},
            "invalid configuration: optim.select_on ccc_valence: model.task distribution does "
            "not score it on dev; choose one of auto, jsd, kld, uar, accuracy, macro_f1, loss",
        ),
    ],
)
def test_a_metric_the_config_cannot_select_on_is_one_line(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}") as refused:
        load_run_config(overrides={"data.corpus": "c", **settings})
    assert "\n" not in str(refused.value)


def test_an_attribute_named_before_the_corpus_names_them_passes_the_config() -> None:
    config = load_run_config(
        overrides={"data.corpus": "c", "model.task": "attributes", "optim.select_on": "ccc_x"}
    )
    assert config.optim.select_on == "ccc_x"  # training checks it against the corpus's names


def test_a_metric_the_corpus_task_cannot_select_on_is_refused_before_anything_is_written(
    corpus: Path, tmp_path: Path
) -> None:
    # the tone corpus trains the categorical task: no CCC on its dev split
    with pytest.raises(ConfigError) as refused:
        train(tiny_run(corpus, tmp_path / "run", **{"optim.select_on": "ccc"}))
    assert str(refused.value) == (
        "optim.select_on ccc: model.task categorical does not score it on dev; choose one of "
        "auto, uar, accuracy, macro_f1, loss"
    )
    assert not (tmp_path / "run" / "config.yaml").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("metric", "name", "head"),
    [
        ("macro_f1", "dev macro-F1", "fold           epoch dev macro-F1     UAR"),
        ("loss", "dev loss", "fold           epoch dev loss     UAR"),
    ],
)
def test_a_run_tests_the_epoch_of_its_best_dev_metric_and_names_it(
    corpus: Path, tmp_path: Path, metric: str, name: str, head: str
) -> None:
    settings = {"optim.epochs": 4, "optim.lr": 2e-2, "seed": 1, "threads": 1}
    run = tmp_path / "run"
    result = train(tiny_run(corpus, run, **{**settings, "optim.select_on": metric}))
    fold = result.folds[0]
    scores = [row[f"dev_{metric}"] for row in fold["history"]]
    best = min(scores) if metric == "loss" else max(scores)
    assert fold["best_epoch"] == scores.index(best) + 1 and fold[f"dev_{metric}"] == best
    assert "dev_uar" not in fold  # the fold's dev score is the chosen one
    assert head in result.summary
    saved = json.loads((run / "fold-fold1" / "results.json").read_text())
    assert saved[f"dev_{metric}"] == best
    figure = learning_curves_figure(fold["history"], "fold1", metric, fold["best_epoch"])
    assert figure.axes[1].get_title() == (
        f"fold1: {name} {best:.3f} at the tested epoch {fold['best_epoch']}"
    )
    assert (run / "fold-fold1" / "learning_curves.png").stat().st_size > 0
    log = (run / "train.log").read_text()
    assert f"(best {name}): {name} {best:.3f}; test" in log
    # the history and so the training are those of the run that selects on UAR (which, on
    # the CPU this was written on, tested epoch 2 where macro-F1 and the loss tested epoch 4)
    auto = train(tiny_run(corpus, tmp_path / "auto", **settings)).folds[0]
    drop = {"seconds"}
    assert [{k: v for k, v in row.items() if k not in drop} for row in auto["history"]] == [
        {k: v for k, v in row.items() if k not in drop} for row in fold["history"]
    ]
    assert auto["best_epoch"] == selected_epoch(auto["history"], "uar")[0]


class Interrupted(BaseException):
    """Stands for a kill: not an Exception, so nothing on the way catches it."""


@pytest.mark.slow
def test_a_run_selecting_on_the_loss_resumes_to_the_whole_runs_results(
    corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = {"optim.epochs": 4, "optim.select_on": "loss", "threads": 1}
    settings |= {"optim.early_stopping_patience": 1, "optim.lr": 2e-2}
    whole = train(tiny_run(corpus, tmp_path / "whole", **settings)).folds[0]
    config = tiny_run(corpus, tmp_path / "cut", **settings)
    save = checkpoint_module.FoldCheckpoints.save

    def saving_then_stopping(self: Any, progress: Any, *args: Any) -> None:
        save(self, progress, *args)
        if progress.epoch == 2:
            assert progress.best_uar == min(row["dev_loss"] for row in progress.history)
            raise Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint_module.FoldCheckpoints, "save", saving_then_stopping)
        with pytest.raises(Interrupted):
            train(config)
    resumed = train(config, resume=True).folds[0]
    for key in ("best_epoch", "dev_loss", "test", "stopped_early"):
        assert resumed.get(key) == whole.get(key)
    with pytest.raises(RunDirError, match=r"changed: optim\.select_on\)"):
        train(tiny_run(corpus, tmp_path / "cut", **{**settings, "optim.select_on": "auto"}), True)


def test_a_run_written_before_the_option_resumes_and_a_changed_choice_is_refused(
    tmp_path: Path,
) -> None:
    config = load_run_config(overrides={"data.corpus": "c", "output_dir": str(tmp_path / "run")})
    written = config.model_dump(mode="json")
    del written["optim"]["select_on"]  # as runs before the option wrote their config
    run = RunDir(tmp_path / "run")
    (run.path / "fold-fold1").mkdir(parents=True)
    (run.path / "config.yaml").write_text(yaml.safe_dump(written, sort_keys=False))
    (run.path / "fold-fold1" / "results.json").write_text('{"fold": "fold1", "test": {}}')
    claim_run_dir(run, config, resume=True)  # auto: what the older run selected on
    changed = config.model_copy(update={"optim": OptimConfig(select_on="macro_f1")})
    with pytest.raises(RunDirError, match=r"changed: optim\.select_on\)"):
        claim_run_dir(run, changed, resume=True)
    # a run of the legacy fixture, written before many optim keys, compares equal too
    legacy = Path(__file__).parent / "data" / "legacy" / "run" / "config.yaml"
    document = read_config_file(legacy)
    assert "select_on" not in document["optim"] and "schedule" not in document["optim"]
    today = load_run_config(legacy).model_dump(mode="json")
    assert config_differences(with_defaults(document), today) == []


def _task_corpus(task: str, root: Path) -> Path:
    if task == "distribution":
        return write_disagreement_corpus(root, clips_per_speaker=10, annotators=5).prepared
    return make_attribute_corpus(root, "both" if task == "multitask" else "attributes")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "metric", "head"),
    [
        ("attributes", "ccc_valence", "epoch dev CCC valence     CCC"),
        ("multitask", "macro_f1", "epoch dev macro-F1     UAR"),
        ("distribution", "kld", "epoch  dev KLD     JSD"),
        ("distribution", "macro_f1", "epoch dev macro-F1     JSD"),
    ],
)
def test_every_task_selects_on_the_dev_metric_chosen(
    tmp_path: Path, task: str, metric: str, head: str
) -> None:
    corpus = _task_corpus(task, tmp_path / "corpus")
    settings = {"model.task": task, "optim.select_on": metric, "optim.epochs": 3}
    result = train(tiny_run(corpus, tmp_path / "run", **settings))
    fold = result.folds[0]
    assert (fold["best_epoch"], fold[f"dev_{metric}"]) == selected_epoch(fold["history"], metric)
    assert head in result.summary
    assert f"(best dev {metric_label(metric)})" in (tmp_path / "run" / "train.log").read_text()
