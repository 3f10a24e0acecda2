"""Scoring trained models on a prepared corpus: a whole run's folds, or one saved model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from peft_ser.config import DataConfig, FoldSelector, ModelConfig, RunConfig
from peft_ser.data import LengthBucketSampler, UtteranceDataset
from peft_ser.errors import UserError
from peft_ser.fileio import write_atomic
from peft_ser.manifest import Fold, PreparedCorpus, select
from peft_ser.metrics import classification_metrics, confusion_figure, summarize
from peft_ser.model import CONFIG_FILE, WEIGHTS_FILE, SERModel
from peft_ser.training.corpus import fold_directory, resolve_corpus, safe_name, select_folds
from peft_ser.training.results import json_text, metrics_csv, save_figure
from peft_ser.training.run import RUN_CONFIG, accelerator_for
from peft_ser.training.scoring import loader_batches, predict


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
    Metrics (JSON, CSV) and confusion matrices go to ``output_dir`` (default
    ``<source>/evaluation``); the metrics are also returned.
    """
    source = Path(source)
    accelerator = accelerator_for("auto")
    out = Path(output_dir) if output_dir is not None else source / "evaluation"
    jobs = evaluation_jobs(source, corpus, folds)
    per_fold, pooled_truth, pooled_pred, pooled_gender = [], [], [], []
    for job in jobs:
        loaded = SERModel.load(job.model_dir)
        if loaded.layout.task != "categorical":
            raise UserError(
                f"{job.model_dir}: a {loaded.layout.task} model; evaluate scores categorical "
                "models (its run's results.json and results.csv hold the attribute metrics)"
            )
        model = accelerator.prepare(loaded).eval()
        utterances = select(job.prepared, getattr(job.fold, split))
        dataset = UtteranceDataset(utterances, job.prepared.labels)
        sampler = LengthBucketSampler(dataset.lengths(), batch_size, shuffle=False)
        batches = loader_batches(dataset, sampler, num_workers=0)
        predictions = predict(accelerator, model, batches, None, len(dataset))
        truth = [dataset.label_of(i) for i in predictions.indices]
        genders = [utterances[i].gender for i in predictions.indices]
        metrics = classification_metrics(
            truth, predictions.predicted, job.prepared.labels, genders, interval=True
        )
        metrics["fold"] = job.fold.name
        per_fold.append(metrics)
        pooled_truth += truth
        pooled_pred += predictions.predicted
        pooled_gender += genders
        save_figure(
            out / f"confusion-{safe_name(job.fold.name)}.png",
            confusion_figure(
                metrics["confusion"], job.prepared.labels, f"{split}: {job.fold.name}"
            ),
        )
    labels = jobs[0].prepared.labels
    overall = {
        "pooled": classification_metrics(
            pooled_truth, pooled_pred, labels, pooled_gender, interval=True
        ),
        "mean_std": summarize(per_fold),
    }
    result = {"split": split, "folds": per_fold, "overall": overall}
    write_atomic(out / "metrics.json", json_text(result))
    write_atomic(out / "metrics.csv", metrics_csv(per_fold, overall["mean_std"]))
    save_figure(
        out / "confusion.png", confusion_figure(overall["pooled"]["confusion"], labels, split)
    )
    return result


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
        return jobs
    if not (source / CONFIG_FILE).is_file():
        raise UserError(f"{source}: neither a run directory nor a saved model")
    if corpus is None:
        raise UserError("evaluating a model directory needs a prepared corpus (--corpus)")
    model_config = ModelConfig.model_validate_json((source / CONFIG_FILE).read_text())
    prepared = resolve_corpus(DataConfig.model_validate({"corpus": str(corpus)}))
    if list(prepared.labels) != list(model_config.labels):
        raise UserError(
            f"model labels {model_config.labels} differ from the corpus's {prepared.labels}"
        )
    return [
        EvaluationJob(source, model_config, prepared, f)
        for f in select_folds(prepared.folds, folds)
    ]
