"""The files a run leaves: per-fold and overall results, tables, figures, the summary."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from peft_ser.config import RunConfig
from peft_ser.config.selection import metric_label
from peft_ser.data.manifest import csv_text
from peft_ser.evaluation.metrics import (
    DISTRIBUTION_SCALARS,
    SCALARS,
    confusion_figure,
    emobox_line,
    regression_scalars,
    summarize,
)
from peft_ser.models.ser_model import CONFIG_FILE
from peft_ser.runs.layout import RunDir
from peft_ser.utils.fileio import write_atomic

log = logging.getLogger(__name__)


def json_text(document: Any) -> str:
    """Strict JSON (no ``NaN``/``Infinity`` tokens): an undefined number is written as ``null``.

    A number is undefined, not wrong, when its split is empty (the loss of no items); every other
    reader of a results file can then parse it with any JSON library.
    """
    return json.dumps(_finite_or_none(document), indent=1, allow_nan=False) + "\n"


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(item) for item in value]
    return value


def save_figure(path: Path, figure: Figure) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    write_atomic(path, buffer.getvalue())


def replace_dir(source: Path, target: Path, keep_source: bool) -> None:
    """Copy ``source`` to ``target`` through a temporary sibling and a rename."""
    temporary = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    shutil.copytree(source, temporary, ignore=shutil.ignore_patterns("*.json", "rng-*", "opt*"))
    shutil.copy2(source / CONFIG_FILE, temporary / CONFIG_FILE)
    shutil.rmtree(target, ignore_errors=True)
    temporary.rename(target)
    if not keep_source:
        shutil.rmtree(source)


class BadAudioLog:
    """Files that failed to load, kept in memory and rewritten whole (atomically) on change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[tuple[str, str], tuple[str, str, str, str]] = {}
        if path.is_file():
            lines = path.read_text().splitlines()[1:]
            for row in csv.reader(lines):
                self.rows[(row[0], row[2])] = (row[0], row[1], row[2], row[3])

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, rows: Sequence[tuple[str, str, str, str]]) -> None:
        new = {(r[0], r[2]): r for r in rows if (r[0], r[2]) not in self.rows}
        if not new:
            return
        for _key, _path, split, reason in new.values():
            log.warning("skipping unreadable audio (%s split): %s", split, reason)
        self.rows.update(new)
        write_atomic(
            self.path, csv_text(["key", "path", "split", "reason"], list(self.rows.values()))
        )


def overall_metrics(
    fold_results: Sequence[dict[str, Any]], corpus_warnings: Sequence[str] = ()
) -> dict[str, Any]:
    """Mean ± std of the fold scalars, the pooled test confusion, and every warning of the run:
    the corpus's (folds that share speakers) first, then each fold's (a collapsed run)."""
    tests = [fold["test"] for fold in fold_results]
    warnings = list(corpus_warnings) + [
        f"fold {f['fold']}: {text}" for f in fold_results for text in f.get("warnings", [])
    ]
    overall: dict[str, Any] = {"mean_std": summarize(tests), "warnings": warnings}
    if "confusion" in tests[0]:  # attribute-only runs have no classes to confuse
        pooled = np.sum([np.asarray(t["confusion"]) for t in tests], axis=0)
        overall["pooled_confusion"] = pooled.astype(int).tolist()
    return overall


def metrics_csv(per_fold: Sequence[dict[str, Any]], mean_std: dict[str, dict[str, float]]) -> str:
    attributes = [key[4:] for key in per_fold[0] if key.startswith("ccc_")] if per_fold else []
    categorical = not per_fold or "uar" in per_fold[0]
    distribution = DISTRIBUTION_SCALARS if per_fold and "jsd" in per_fold[0] else ()
    columns = ["fold", "n", *distribution, *(SCALARS if categorical else ())]
    columns += regression_scalars(attributes)
    columns += ["score"] if per_fold and "score" in per_fold[0] else []
    scalars = columns[2:]
    rows = [[m.get(c, "") for c in columns] for m in per_fold]
    for stat in ("mean", "std"):
        rows.append([stat, "", *(mean_std.get(c, {}).get(stat, "") for c in scalars)])
    return csv_text(columns, rows)


def write_run_results(
    run: RunDir,
    fold_results: Sequence[dict[str, Any]],
    overall: dict[str, Any],
    labels: Sequence[str],
    summary: str,
) -> None:
    """The run's files over all folds; the results JSON last, as it marks the run complete."""
    tests = [{**fold["test"], "fold": fold["fold"]} for fold in fold_results]
    write_atomic(run.results_table, metrics_csv(tests, overall["mean_std"]))
    if "pooled_confusion" in overall:
        save_figure(
            run.confusion,
            confusion_figure(overall["pooled_confusion"], labels, "all folds (test)"),
        )
    write_atomic(run.summary, summary)
    document = {"folds": list(fold_results), "overall": overall}
    write_atomic(run.results, json_text(document))


def summary_text(
    config: RunConfig, fold_results: Sequence[dict[str, Any]], overall: dict[str, Any]
) -> str:
    """The one-screen report printed at the end of a run."""
    lines = [
        f"run: {config.output_dir}",
        f"model: {config.model.backbone} / {config.model.method}"
        f" | corpus: {config.data.corpus} | epochs: {config.optim.epochs}",
    ]
    lines += score_lines(fold_results, overall["mean_std"])
    if "uar" in fold_results[0]["test"]:
        lines.append(emobox_line([fold["test"] for fold in fold_results]))
    for fold in fold_results:
        if stop := fold.get("stopped_early"):
            lines.append(
                f"fold {fold['fold']}: stopped early after epoch {stop['epoch']} of "
                f"{config.optim.epochs}: {stop['reason']}"
            )
    lines += [f"warning: {text}" for text in overall["warnings"]]
    for fold in fold_results:
        if fold.get("skipped_steps"):
            lines.append(
                f"warning: fold {fold['fold']}: {fold['skipped_steps']} training steps had a "
                "non-finite loss or gradient and were not applied (see train.log)"
            )
    run = RunDir(config.output_dir)
    if any(fold.get("bad_audio") for fold in fold_results):
        lines.append(f"unreadable audio skipped: see {run.bad_audio}")
    lines.append(f"results: {run.results}")
    return "\n".join(lines) + "\n"


def score_lines(
    fold_results: Sequence[dict[str, Any]], mean_std: dict[str, dict[str, float]]
) -> list[str]:
    """The table of a run's (or an evaluation's) folds and the mean ± std of every score, as
    `train` and `evaluate` print them.

    Each fold is ``{"fold": name, "test": scores}``, with the tested epoch (``best_epoch``)
    and its dev score when it comes from training: those columns are then shown too.
    """
    lines = []
    if "jsd" in fold_results[0]["test"]:
        lines += _distribution_table(fold_results)
    if "uar" in fold_results[0]["test"]:
        lines += _categorical_table(fold_results)
    if "ccc" in fold_results[0]["test"]:
        lines += _attribute_table(fold_results)
    lines.append("")
    for name, stats in mean_std.items():
        lines.append(f"{name:<32}{stats['mean']:.3f} ± {stats['std']:.3f}")
    return lines


def _distribution_table(fold_results: Sequence[dict[str, Any]]) -> list[str]:
    """Per fold: the tested epoch and its dev score (from training), the divergences from the
    vote shares (JSD, KLD), the items scored and those of them with a majority label (the
    UAR of the table below counts those)."""
    head, training = _training_columns(fold_results)
    lines = ["", f"{'fold':<12}{head}{'JSD':>8}{'KLD':>8}{'n':>7}{'labelled':>9}"]
    for fold, cells in zip(fold_results, training, strict=True):
        test = fold["test"]
        lines.append(
            f"{fold['fold']:<12}{cells}{test['jsd']:>8.3f}{test['kld']:>8.3f}"
            f"{test['n']:>7}{test['n_labelled']:>9}"
        )
    return lines


def _categorical_table(fold_results: Sequence[dict[str, Any]]) -> list[str]:
    """Per fold: the tested epoch and its dev score (from training), UAR, accuracy, macro-F1,
    gender gap."""
    head, training = _training_columns(fold_results)
    lines = ["", f"{'fold':<12}{head}{'UAR':>8}{'acc':>8}{'F1':>8}{'gap F−M':>9}"]
    for fold, cells in zip(fold_results, training, strict=True):
        test = fold["test"]
        gap = f"{test['uar_gap']:+.3f}" if "uar_gap" in test else "—"
        lines.append(
            f"{fold['fold']:<12}{cells}"
            f"{test['uar']:>8.3f}{test['accuracy']:>8.3f}{test['macro_f1']:>8.3f}{gap:>9}"
        )
    return lines


def _attribute_table(fold_results: Sequence[dict[str, Any]]) -> list[str]:
    """Per fold: the tested epoch and its dev score (from training), mean CCC and CCC per
    attribute."""
    attributes = [key[4:] for key in fold_results[0]["test"] if key.startswith("ccc_")]
    head, training = _training_columns(fold_results)
    lines = [
        "",
        f"{'fold':<12}{head}{'CCC':>8}" + "".join(f"{'CCC ' + name[:3]:>9}" for name in attributes),
    ]
    for fold, cells in zip(fold_results, training, strict=True):
        test = fold["test"]
        scores = "".join(f"{test[f'ccc_{name}']:>9.3f}" for name in attributes)
        lines.append(f"{fold['fold']:<12}{cells}{test['ccc']:>8.3f}{scores}")
    return lines


def _training_columns(fold_results: Sequence[dict[str, Any]]) -> tuple[str, list[str]]:
    """The head and each fold's cells of the columns training adds: the tested epoch and the
    dev score that picked it (empty when the folds come from an evaluation). The score's
    column is as wide as its name needs (``dev macro-F1``), at least 9."""
    if "best_epoch" not in fold_results[0]:
        return "", ["" for _ in fold_results]
    name = f"dev {metric_label(_dev_key(fold_results[0])[4:])}"
    width = max(9, len(name) + 1)
    cells = [
        f"{fold['best_epoch']:>8}{float(fold[_dev_key(fold)]):>{width}.3f}" for fold in fold_results
    ]
    return f"{'epoch':>8}{name:>{width}}", cells


def _dev_key(fold: dict[str, Any]) -> str:
    """The key of a fold's best dev score, ``dev_<metric>``: the metric that picked its tested
    epoch (``optim.select_on``; ``dev_uar``, ``dev_ccc``, ``dev_score`` or ``dev_jsd`` by
    default, and in runs written before the option)."""
    return next(key for key in fold if key.startswith("dev_"))
