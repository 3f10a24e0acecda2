"""Scoring trained models on a prepared corpus: a whole run's folds, one saved model, or a
model of the zoo.

Every model is scored through the one scoring path (`Objective.score`, via
`score_utterances`), with the metrics and files a run's test split gets: classes by UAR,
accuracy, macro-F1 and fairness, attributes by CCC, Pearson's r and RMSE per attribute,
predicted distributions by JSD and KLD from the vote shares (and UAR, accuracy and macro-F1 on
the utterances with a majority label).

What a single model (a saved folder or a zoo name) is scored on: ``split`` of every selected
fold of ``corpus`` (default: all of them), each fold a row, as a run's fold models are. A model
knows nothing of which fold it was trained for, so on the corpus it was trained on only the
fold it was trained for (``folds``) gives a held-out score: another fold's test speakers were
among its training speakers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn

from peft_ser.config import DataConfig, FoldSelector, ModelConfig
from peft_ser.data.dataset import NO_LABEL
from peft_ser.data.manifest import Fold, PreparedCorpus, select
from peft_ser.evaluation.metrics import (
    attribute_scatter_figure,
    classification_metrics,
    confusion_figure,
    distribution_metrics,
    fold_title,
    regression_metrics,
    summarize,
)
from peft_ser.evaluation.objectives import score_utterances
from peft_ser.evaluation.results import json_text, metrics_csv, save_figure, score_lines
from peft_ser.evaluation.scoring import Outputs
from peft_ser.evaluation.sources import ModelSource, model_source, run_models
from peft_ser.inference.loading import load_model
from peft_ser.models.tasks import OutputLayout, require_votes
from peft_ser.runs.corpus import resolve_corpus, select_folds
from peft_ser.runs.layout import EVALUATION, RunDir, fold_folder, safe_name
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import output_folder, write_atomic
from peft_ser.utils.precision import SCORING, accelerator_for

NOT_A_SOURCE = "neither a run directory nor a saved model"


def evaluate(
    source: str | Path,
    corpus: str | Path | None = None,
    folds: Sequence[FoldSelector] | None = None,
    split: str = "test",
    output_dir: str | Path | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """Score a trained run directory, a saved model directory or a zoo model on a prepared
    corpus.

    For a run directory, each completed fold's model is scored on that fold's ``split`` of the
    run's corpus (or of ``corpus``). For a model directory (``model.save`` output) or a zoo
    name, ``corpus`` is required and the model is scored on ``split`` of each selected fold
    (default: all; see the module's docstring). Metrics (JSON, CSV) go to ``output_dir``
    (default ``<source>/evaluation``, ``evaluation/<name>`` for a zoo name) with the plots of
    the pooled predictions: ``confusion.png`` for classes, ``attributes.png`` for attributes.
    A categorical model adds ``confusion-<fold>.png`` per fold; an attribute, multitask or
    distribution model writes what training writes for its test split into ``fold-<name>/``
    (``predictions.csv``, ``attributes.png``, and ``confusion.png`` with classes). The
    metrics are also returned.
    """
    out = output_folder(evaluation_folder(source, output_dir), "--output-dir")
    named = model_source(source, NOT_A_SOURCE)
    prepared, plan, precision = evaluation_plan(named, corpus, folds)
    accelerator = accelerator_for(precision)
    scores, attributes = [], []
    for model_ref, model_folds in plan:
        model = load_model(model_ref, device=accelerator.device)
        check_fits(model.config, prepared, model_ref)
        attributes = list(model.config.attributes)
        module = accelerator.prepare(model).eval()
        scores += [
            _score_fold(accelerator, module, model.layout, attributes, prepared, fold, split,
                        batch_size, out)
            for fold in model_folds
        ]  # fmt: skip
    per_fold = [score.metrics for score in scores]
    labels = prepared.labels
    pooled: dict[str, Any] = {}
    if scores[0].classes:
        truth = [item for score in scores for item in score.truth]
        predicted = [item for score in scores for item in score.predicted]
        genders = [item for score in scores for item in score.genders]
        pooled |= classification_metrics(truth, predicted, labels, genders, interval=True)
        figure = confusion_figure(pooled["confusion"], labels, f"all folds ({split})")
        save_figure(out / "confusion.png", figure)
    if scores[0].shares is not None:
        shares = torch.cat([score.shares for score in scores if score.shares is not None])
        logits = torch.cat([score.logits for score in scores if score.logits is not None])
        counts = {"n": int(shares.shape[0]), "n_labelled": pooled["n"]}
        pooled |= distribution_metrics(shares, logits) | counts
    if attributes:
        ratings = np.concatenate([score.ratings for score in scores])
        values = np.concatenate([score.values for score in scores])
        pooled |= regression_metrics(ratings, values, attributes)
        figure = attribute_scatter_figure(ratings, values, attributes, f"all folds ({split})")
        save_figure(out / "attributes.png", figure)
    overall = {"pooled": pooled, "mean_std": summarize(per_fold)}
    result = {"split": split, "folds": per_fold, "overall": overall}
    write_atomic(out / "metrics.json", json_text(result))
    write_atomic(out / "metrics.csv", metrics_csv(per_fold, overall["mean_std"]))
    return result


def evaluation_summary(source: str | Path, result: dict[str, Any], out: Path) -> str:
    """The screen `evaluate` prints: the table `train` prints for its folds (without the
    training's epoch and dev columns), the mean ± std of every score, where the files are."""
    folds = [{"fold": scores["fold"], "test": scores} for scores in result["folds"]]
    lines = [f"evaluated: {source} | split: {result['split']}"]
    lines += score_lines(folds, result["overall"]["mean_std"])
    lines.append(f"results: {out / 'metrics.json'}")
    return "\n".join(lines) + "\n"


def evaluation_folder(source: str | Path, output_dir: str | Path | None) -> Path:
    """Where `evaluate` writes: ``output_dir``, else beside the source (`_default_output`)."""
    return Path(output_dir) if output_dir is not None else _default_output(source)


def _default_output(source: str | Path) -> Path:
    """``<source>/evaluation`` for a folder (a run's, or a saved model's), else (a zoo name,
    a Hub repo id) ``evaluation/<name>`` in the working directory."""
    path = Path(source)
    return RunDir(path).evaluation if path.is_dir() else Path(EVALUATION) / path.name


@dataclass
class FoldScore:
    """One fold's metrics, and the predictions that pooling over folds needs: class ids with
    the speakers' genders (``classes``; the items with a majority label), attribute values
    ``[N, A]`` true and predicted, vote shares and logits ``[N, C]`` (a distribution model;
    else None)."""

    metrics: dict[str, Any]
    classes: bool
    truth: list[int] = field(default_factory=list)
    predicted: list[int] = field(default_factory=list)
    genders: list[str] = field(default_factory=list)
    ratings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    shares: torch.Tensor | None = None
    logits: torch.Tensor | None = None


def _score_fold(
    accelerator: Accelerator,
    module: nn.Module,
    layout: OutputLayout,
    attributes: list[str],
    prepared: PreparedCorpus,
    fold: Fold,
    split: str,
    batch_size: int,
    out: Path,
) -> FoldScore:
    """Score a model on ``split`` of ``fold`` as training scores its test split, and write the
    fold's files: ``confusion-<fold>.png`` for a categorical model, the test split's files
    (`Objective.write_split_files`) in ``fold-<name>/`` for an attribute, multitask or
    distribution one."""
    title = f"{fold_title(fold.name)} ({split})"
    utterances = select(prepared, getattr(fold, split))
    objective, metrics = score_utterances(
        accelerator, module, layout, utterances, split, batch_size, prepared.labels, attributes
    )
    outputs: Outputs = metrics.pop("predictions")
    if layout.task == "categorical":
        save_figure(
            out / f"confusion-{safe_name(fold.name)}.png",
            confusion_figure(metrics["confusion"], prepared.labels, title),
        )
    else:
        objective.write_split_files(fold_folder(out, fold.name), split, metrics, outputs, title)
    dataset = objective.splits[split]
    rows = torch.from_numpy(outputs.values).float().reshape(-1, layout.width)
    logits, values = objective.outputs(rows)
    score = FoldScore({**metrics, "fold": fold.name}, logits is not None)
    truth = [dataset.label_of(i) for i in outputs.indices]
    if logits is not None:
        labelled = [i for i in range(len(outputs.indices)) if truth[i] != NO_LABEL]
        score.truth = [truth[i] for i in labelled]
        score.predicted = logits[labelled].argmax(dim=-1).tolist()
        score.genders = [dataset.utterances[outputs.indices[i]].gender for i in labelled]
    if logits is not None and objective.distribution:
        score.shares, score.logits = objective.shares[split][outputs.indices], logits
    if values is not None:
        score.ratings = objective.targets[split][outputs.indices].numpy()
        score.values = values.numpy()
    return score


class EvaluationPlan(NamedTuple):
    """What `evaluate` scores: the corpus, each model to load (a saved folder or a zoo name)
    with the folds to score it on, and the precision to score in."""

    prepared: PreparedCorpus
    models: list[tuple[str, list[Fold]]]
    precision: str


def evaluation_plan(
    source: ModelSource,
    corpus: str | Path | None,
    folds: Sequence[FoldSelector] | None,
) -> EvaluationPlan:
    """The corpus to score on, and each model with the folds to score it on: a run's
    completed folds, each by its own model, in the precision the run trained and tested in, or
    one model on the selected folds, the same on every CPU (`SCORING`). Each model is scored
    on the utterances its task can use (`peft_ser.models.tasks.usable`): a class or attribute
    model not on those kept for their votes alone, a distribution model on every one with
    votes on its labels."""
    if isinstance(source, RunDir):
        run = source.read_config()
        data = run.data if corpus is None else run.data.model_copy(update={"corpus": str(corpus)})
        prepared = resolve_corpus(data)
        chosen = select_folds(prepared.folds, folds if folds is not None else run.data.folds)
        models = run_models(source, chosen)
        check_fits(run.model, prepared, source.path)
        return EvaluationPlan(
            prepared, [(str(path), [fold]) for fold, path in models], run.mixed_precision
        )
    if corpus is None:
        raise UserError(
            f"{source}: evaluating a saved model or a zoo model needs a prepared corpus (--corpus)"
        )
    prepared = resolve_corpus(DataConfig.model_validate({"corpus": str(corpus)}))
    return EvaluationPlan(prepared, [(source, select_folds(prepared.folds, folds))], SCORING)


def check_fits(config: ModelConfig, prepared: PreparedCorpus, source: str | Path) -> None:
    """`UserError` unless the corpus has what the model at ``source`` predicts: its classes,
    in its order (unless it predicts attributes alone), a rating of every attribute it
    predicts on every utterance (a corpus prepared with ``--targets attributes`` or ``both``
    that rates them), and votes for a distribution model (``--targets distribution``)."""
    task = config.task or "categorical"
    if task != "attributes" and list(prepared.labels) != list(config.labels):
        raise UserError(f"model labels {config.labels} differ from the corpus's {prepared.labels}")
    if task == "distribution":
        require_votes(prepared, f"{source} (a distribution model)")
    unrated = [name for name in config.attributes if name not in prepared.attributes]
    if unrated:
        targets = "both" if task == "multitask" else "attributes or both"
        rated = ", ".join(prepared.attributes) or "nothing"
        raise UserError(
            f"{source}: the model predicts {', '.join(config.attributes)}, but the corpus "
            f"(prepared with --targets {prepared.targets}) rates {rated}; score it on a corpus "
            f"prepared with --targets {targets} that rates them"
        )
