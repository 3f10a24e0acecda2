"""Cross-corpus evaluation: models trained on some corpora, scored on others, as a matrix.

Each train source is a saved model folder, a zoo name or a run directory (every completed
fold's model, their UARs averaged); each test corpus a prepared corpus. Models are scored
through the one scoring path (`score_utterances`). Label sets are matched by name: a
cell scores only the classes the model and the test corpus share, on the test utterances of
those classes, with the model's choice restricted to them (argmax over the shared classes'
logits). With ``balance``, every shared class keeps as many test utterances as the rarest one
has, drawn with a fixed seed (as EmoBox's cross-corpus track balances its test sets). The
matrix (train × test UAR) is written as CSV, a heatmap PNG and JSON with each cell's shared
classes and counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from peft_ser.config import DataConfig
from peft_ser.data.manifest import PreparedCorpus, Utterance, csv_text, select
from peft_ser.evaluation.objectives import score_utterances
from peft_ser.evaluation.results import json_text, save_figure
from peft_ser.evaluation.sources import model_source, run_models
from peft_ser.inference.loading import load_model
from peft_ser.runs.corpus import resolve_corpus
from peft_ser.runs.layout import MODEL, RunDir
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import output_folder, write_atomic
from peft_ser.utils.precision import SCORING, accelerator_for

SPLITS = ("all", "test")
"""Which test utterances a cell scores: the whole manifest, or every fold's test split."""


@dataclass(frozen=True)
class Cell:
    """One train source scored on one test corpus."""

    uar: float
    shared: list[str]
    n: int
    per_class: dict[str, int]


def train_models(source: str | Path) -> list[str]:
    """The models of a train source, as `load_model` takes them: a saved model folder or a zoo
    name itself, or a run's completed folds' models (in its corpus's fold order)."""
    found = model_source(source, "neither a saved model folder nor a run directory")
    if not isinstance(found, RunDir):
        return [found]
    prepared = resolve_corpus(found.read_config().data)
    return [str(path) for _, path in run_models(found, prepared.folds)]


def test_utterances(
    prepared: PreparedCorpus, shared: Sequence[str], split: str, balance: bool, seed: int
) -> list[Utterance]:
    """The test corpus's utterances of the shared classes (``split`` all or test), balanced
    per class to the rarest shared class's count when asked, in manifest order."""
    if split == "test":
        keys = dict.fromkeys(key for fold in prepared.folds for key in fold.test)
        pool = select(prepared, keys)
    else:
        pool = list(prepared.manifest)
    pool = [u for u in pool if u.label in shared]
    if not balance or not pool:
        return pool
    by_class = {name: [u for u in pool if u.label == name] for name in shared}
    smallest = min(len(items) for items in by_class.values())
    rng = np.random.default_rng(seed)
    kept = {
        u.key
        for items in by_class.values()
        for u in (items[i] for i in rng.choice(len(items), smallest, replace=False))
    }
    return [u for u in pool if u.key in kept]


def score_model(
    model_ref: str,
    prepared: PreparedCorpus,
    split: str = "all",
    balance: bool = False,
    seed: int = 0,
    batch_size: int = 16,
) -> Cell:
    """UAR of one model (a saved folder or a zoo name) on the classes it shares with
    ``prepared``, choosing among those classes only (a distribution model too: its argmax
    against the majority labels)."""
    accelerator = accelerator_for(SCORING)
    model = load_model(model_ref, device=accelerator.device)
    if not model.layout.logits_width:
        raise UserError(f"{model_ref}: an attribute-only model has no classes to score")
    shared = [name for name in model.labels if name in prepared.labels]
    if not shared:
        raise UserError(
            f"{model_ref}: no class in common with the test corpus (model {model.labels}, "
            f"corpus {prepared.labels})"
        )
    utterances = test_utterances(prepared, shared, split, balance, seed)
    _, metrics = score_utterances(
        accelerator, accelerator.prepare(model).eval(), model.layout, utterances, split,
        batch_size, shared, attributes=[], columns=[model.labels.index(n) for n in shared],
        interval=False, votes=False,
    )  # fmt: skip
    counts = {name: sum(u.label == name for u in utterances) for name in shared}
    return Cell(metrics["uar"], shared, metrics["n"], counts)


def cross_corpus(
    train: Sequence[str | Path],
    test: Sequence[str | Path],
    output_dir: str | Path,
    split: str = "all",
    balance: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Score every train source on every test corpus; write ``matrix.csv``, ``matrix.png``
    and ``matrix.json`` to ``output_dir`` and return the JSON document."""
    if split not in SPLITS:
        raise UserError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    _require_distinct([_name(t) for t in test], "--test")
    _require_distinct([_name(t) for t in train], "--train")
    out = output_folder(output_dir, "--output-dir")
    sources = {_name(source): train_models(source) for source in train}
    corpora = {
        _name(t): resolve_corpus(DataConfig.model_validate({"corpus": str(t)})) for t in test
    }
    rows: dict[str, dict[str, Any]] = {}
    for source, models in sources.items():
        row = {}
        for name, prepared in corpora.items():
            cells = [score_model(m, prepared, split, balance, seed) for m in models]
            row[name] = {
                "uar": float(np.mean([c.uar for c in cells])),
                "uar_per_model": [c.uar for c in cells],
                "shared_classes": cells[0].shared,
                "n": cells[0].n,
                "per_class": cells[0].per_class,
            }
        rows[source] = row
    document = {"split": split, "balanced": balance, "seed": seed, "matrix": rows}
    names = list(corpora)
    table = [[name, *(f"{row[n]['uar']:.4f}" for n in names)] for name, row in rows.items()]
    write_atomic(out / "matrix.csv", csv_text(["train", *names], table))
    save_figure(out / "matrix.png", matrix_figure(rows, names, balance))
    write_atomic(out / "matrix.json", json_text(document))
    return document


def _require_distinct(names: Sequence[str], option: str) -> None:
    """Rows and columns are named by folder: two with one name would overwrite each other."""
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"{option}: two sources are named {repeated[0]!r}; give distinct folders")
    if not names:
        raise UserError(f"{option}: give at least one")


def _name(source: str | Path) -> str:
    """A row or column name: the folder's name (``prepared/iemocap`` → ``iemocap``), its
    parent's for folders named ``prepared`` or ``model`` (``runs/a/prepared`` → ``a``); a zoo
    model's name."""
    path = Path(source).resolve()
    return path.parent.name if path.name in ("prepared", MODEL) else path.name


def matrix_figure(rows: dict[str, dict[str, Any]], tests: Sequence[str], balance: bool) -> Figure:
    """A train × test heatmap of UAR, each cell with its value and shared class count."""
    values = np.array([[row[t]["uar"] for t in tests] for row in rows.values()])
    figure = Figure(figsize=(2 + 1.6 * len(tests), 1.5 + 0.8 * len(rows)))
    axes = figure.subplots()
    image = axes.imshow(values, cmap="viridis", vmin=0, vmax=1)
    for (i, j), value in np.ndenumerate(values):
        shared = len(list(rows.values())[i][tests[j]]["shared_classes"])
        axes.text(j, i, f"{value:.3f}\n({shared} cl.)", ha="center", va="center", color="white")
    axes.set(
        xticks=range(len(tests)),
        yticks=range(len(rows)),
        xticklabels=tests,
        yticklabels=list(rows),
        xlabel="test corpus",
        ylabel="trained on",
        title="cross-corpus UAR" + (" (balanced test sets)" if balance else ""),
    )
    figure.colorbar(image, ax=axes, fraction=0.046, label="UAR")
    figure.tight_layout()
    return figure
