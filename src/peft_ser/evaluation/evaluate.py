"""Scoring trained models on a prepared corpus: a whole run's folds, or one saved model.

Categorical models are scored by their predicted classes; attribute and multitask models by
the `Objective` their training tested them with, so their metrics (CCC, Pearson, RMSE per
attribute) and fold files are the ones of a run's test split.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from accelerate import Accelerator

from peft_ser.config import DataConfig, FoldSelector, ModelConfig, OptimConfig, RunConfig
from peft_ser.data.dataset import Batch, UtteranceDataset
from peft_ser.data.manifest import Fold, PreparedCorpus, select
from peft_ser.data.sampler import LengthBucketSampler
from peft_ser.evaluation.metrics import (
    attribute_scatter_figure,
    classification_metrics,
    confusion_figure,
    regression_metrics,
    summarize,
)
from peft_ser.evaluation.objectives import Objective, Outputs
from peft_ser.evaluation.results import json_text, metrics_csv, save_figure
from peft_ser.evaluation.scoring import loader_batches, predict
from peft_ser.models.ser_model import CONFIG_FILE, WEIGHTS_FILE, SERModel
from peft_ser.models.tasks import OutputLayout
from peft_ser.runs.corpus import fold_directory, resolve_corpus, safe_name, select_folds
from peft_ser.runs.layout import RUN_CONFIG
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import output_folder, write_atomic
from peft_ser.utils.precision import accelerator_for


def evaluate(
    source: str | Path,
    corpus: str | Path | None = None,
    folds: Sequence[FoldSelector] | None = None,
    split: str = "test",
    output_dir: str | Path | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Score a trained run directory, or one saved model directory, on a prepared corpus.

    For a run directory, each completed fold's model is scored on that fold's ``split`` of the
    run's corpus (or of ``corpus``). For a model directory (``model.save`` output), ``corpus``
    is required and the model is scored on ``split`` of each selected fold (default: all).
    Metrics (JSON, CSV) go to ``output_dir`` (default ``<source>/evaluation``) with the
    plots of the pooled predictions: ``confusion.png`` for classes, ``attributes.png`` for
    attributes. A categorical model adds ``confusion-<fold>.png`` per fold; an attribute or
    multitask model writes what training writes for its test split into ``fold-<name>/``
    (``predictions.csv``, ``attributes.png``, and ``confusion.png`` with classes). The
    metrics are also returned.
    """
    source = Path(source)
    accelerator = accelerator_for("auto")
    out = output_folder(source / "evaluation" if output_dir is None else output_dir, "--output-dir")
    jobs = evaluation_jobs(source, corpus, folds)
    scores = [_score_fold(accelerator, job, split, batch_size, out) for job in jobs]
    per_fold = [score.metrics for score in scores]
    labels, attributes = jobs[0].prepared.labels, jobs[0].model_config.attributes
    pooled: dict[str, Any] = {}
    if scores[0].classes:
        truth = [item for score in scores for item in score.truth]
        predicted = [item for score in scores for item in score.predicted]
        genders = [item for score in scores for item in score.genders]
        pooled |= classification_metrics(truth, predicted, labels, genders, interval=True)
        save_figure(out / "confusion.png", confusion_figure(pooled["confusion"], labels, split))
    if attributes:
        ratings = np.concatenate([score.ratings for score in scores])
        values = np.concatenate([score.values for score in scores])
        pooled |= regression_metrics(ratings, values, attributes)
        figure = attribute_scatter_figure(ratings, values, attributes, split)
        save_figure(out / "attributes.png", figure)
    overall = {"pooled": pooled, "mean_std": summarize(per_fold)}
    result = {"split": split, "folds": per_fold, "overall": overall}
    write_atomic(out / "metrics.json", json_text(result))
    write_atomic(out / "metrics.csv", metrics_csv(per_fold, overall["mean_std"]))
    return result


@dataclass
class FoldScore:
    """One fold's metrics, and the predictions that pooling over folds needs: class ids with
    the speakers' genders (``classes``), attribute values ``[N, A]`` true and predicted."""

    metrics: dict[str, Any]
    classes: bool
    truth: list[int] = field(default_factory=list)
    predicted: list[int] = field(default_factory=list)
    genders: list[str] = field(default_factory=list)
    ratings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))


def _score_fold(
    accelerator: Accelerator, job: EvaluationJob, split: str, batch_size: int, out: Path
) -> FoldScore:
    """Score ``job``'s model on ``split`` of its fold and write the fold's plots."""
    loaded = SERModel.load(job.model_dir)
    model = accelerator.prepare(loaded).eval()
    utterances = select(job.prepared, getattr(job.fold, split))
    dataset = UtteranceDataset(utterances, job.prepared.labels)
    sampler = LengthBucketSampler(dataset.lengths(), batch_size, shuffle=False)
    batches = loader_batches(dataset, sampler, num_workers=0)
    title = f"{split}: {job.fold.name}"
    if loaded.layout.task == "categorical":
        predictions = predict(accelerator, model, batches, None, len(dataset))
        truth = [dataset.label_of(i) for i in predictions.indices]
        genders = [utterances[i].gender for i in predictions.indices]
        metrics = classification_metrics(
            truth, predictions.predicted, job.prepared.labels, genders, interval=True
        )
        save_figure(
            out / f"confusion-{safe_name(job.fold.name)}.png",
            confusion_figure(metrics["confusion"], job.prepared.labels, title),
        )
        metrics["fold"] = job.fold.name
        return FoldScore(metrics, True, truth, predictions.predicted, genders)
    return _score_task(accelerator, model, loaded.layout, job, split, dataset, batches, out, title)


def _score_task(
    accelerator: Accelerator,
    model: torch.nn.Module,
    layout: OutputLayout,
    job: EvaluationJob,
    split: str,
    dataset: UtteranceDataset,
    batches: Iterator[Batch],
    out: Path,
    title: str,
) -> FoldScore:
    """Score an attribute or multitask model on ``split`` as training scores its test split
    (the same `Objective`, metrics and files); the loss is left out, as for categorical models: its
    class weights and attribute loss are the training run's, not the model's."""
    labels, attributes = job.prepared.labels, job.model_config.attributes
    unweighted = torch.ones(len(labels))
    objective = Objective(layout, labels, attributes, OptimConfig(), unweighted, {split: dataset})
    metrics = objective.score(accelerator, model, batches, split, interval=True)
    outputs: Outputs = metrics.pop("predictions")
    del metrics["loss"]
    objective.write_split_files(fold_directory(out, job.fold.name), split, metrics, outputs, title)
    rows = torch.from_numpy(outputs.values).float().reshape(-1, layout.width)
    logits, values = layout.logits(rows), layout.values(rows)
    score = FoldScore({**metrics, "fold": job.fold.name}, logits is not None)
    if logits is not None:
        score.truth = [dataset.label_of(i) for i in outputs.indices]
        score.predicted = logits.argmax(dim=-1).tolist()
        score.genders = [dataset.utterances[i].gender for i in outputs.indices]
    if values is not None:
        score.ratings = objective.targets[split][outputs.indices].numpy()
        score.values = values.numpy()
    return score


@dataclass
class EvaluationJob:
    model_dir: Path
    model_config: ModelConfig
    prepared: PreparedCorpus
    fold: Fold


def evaluation_jobs(
    source: Path,
    corpus: str | Path | None,
    folds: Sequence[FoldSelector] | None,
) -> list[EvaluationJob]:
    """What to score: each completed fold of a run, or one model on the selected folds."""
    if (source / RUN_CONFIG).is_file():
        run = RunConfig.model_validate(yaml.safe_load((source / RUN_CONFIG).read_text()))
        data = run.data if corpus is None else run.data.model_copy(update={"corpus": str(corpus)})
        prepared = resolve_corpus(data)
        chosen = select_folds(prepared.folds, folds if folds is not None else run.data.folds)
        jobs = [
            EvaluationJob(fold_directory(source, f.name) / "model", run.model, prepared, f)
            for f in chosen
            if (fold_directory(source, f.name) / "model" / WEIGHTS_FILE).is_file()
        ]
        if not jobs:
            raise UserError(f"{source}: no completed fold with a saved model")
        check_fits(run.model, prepared, source)
        return jobs
    if not (source / CONFIG_FILE).is_file():
        raise UserError(f"{source}: neither a run directory nor a saved model")
    if corpus is None:
        raise UserError("evaluating a model directory needs a prepared corpus (--corpus)")
    model_config = ModelConfig.model_validate_json((source / CONFIG_FILE).read_text())
    prepared = resolve_corpus(DataConfig.model_validate({"corpus": str(corpus)}))
    check_fits(model_config, prepared, source)
    return [
        EvaluationJob(source, model_config, prepared, f)
        for f in select_folds(prepared.folds, folds)
    ]


def check_fits(config: ModelConfig, prepared: PreparedCorpus, source: Path) -> None:
    """`UserError` unless the corpus has what the model at ``source`` predicts: its classes,
    in its order (unless it predicts attributes alone), and a rating of every attribute it
    predicts on every utterance (a corpus prepared with ``--targets attributes`` or ``both``
    that rates them)."""
    task = config.task or "categorical"
    if task != "attributes" and list(prepared.labels) != list(config.labels):
        raise UserError(f"model labels {config.labels} differ from the corpus's {prepared.labels}")
    unrated = [name for name in config.attributes if name not in prepared.attributes]
    if unrated:
        targets = "both" if task == "multitask" else "attributes or both"
        rated = ", ".join(prepared.attributes) or "nothing"
        raise UserError(
            f"{source}: the model predicts {', '.join(config.attributes)}, but the corpus "
            f"(prepared with --targets {prepared.targets}) rates {rated}; score it on a corpus "
            f"prepared with --targets {targets} that rates them"
        )
