"""The grid's report: the paper-style table (Markdown, CSV) and figure (PNG) from its cells.

Two axes span the table (rows: methods, columns: backbones by default); cells that differ only
in the other axes (folds, seeds) are pooled, so an entry is the mean ± standard deviation
(population, as in each run's own summary) of the test UAR over every fold of every seed, in
percent as the paper reports it, and EmoBox's leaderboard scores (WA / UA / macro-F1, the
mean of the folds' own scores: `emobox_scores`). Each entry also has its trainable
parameters (counted in the saved model's trainable weights) and training time (the sum of the
epochs' times).

Only finished folds count, read from their results files (`RunDir.fold_results`). An entry
with unfinished folds is shown as incomplete with how many folds are done, never as a number,
so a table read while a sweep runs cannot be mistaken for its result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from safetensors import safe_open

from peft_ser.data.manifest import FOLDS_FILE, MANIFEST_FILE, csv_text
from peft_ser.evaluation.metrics import emobox_scores
from peft_ser.evaluation.results import save_figure
from peft_ser.models.ser_model import WEIGHTS_FILE
from peft_ser.runs.layout import RunDir
from peft_ser.sweep.grid import Cell, Grid, cell_label
from peft_ser.utils.fileio import write_atomic

REPORT_FILES = ("report.md", "report.csv", "report.png")
POOLED = ("data.folds", "seed")
"""Axes an entry pools over unless the report names them as its rows or columns."""


@dataclass
class Entry:
    """One table entry: the pooled folds of every cell with this row and column value."""

    uars: list[float] = field(default_factory=list)
    tests: list[dict[str, Any]] = field(default_factory=list)
    """Every finished fold's test scores, for the EmoBox table (WA, UA, macro-F1)."""
    folds_done: int = 0
    folds_expected: int | None = 0
    trainable: set[int] = field(default_factory=set)
    seconds: float = 0.0
    paper: float | None = None
    classes: set[int] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return self.folds_expected is not None and self.folds_done == self.folds_expected > 0

    @property
    def mean(self) -> float:
        return 100 * float(np.mean(self.uars))

    @property
    def std(self) -> float:
        return 100 * float(np.std(self.uars))

    def add(self, cell: Cell) -> None:
        folds = finished_folds(cell)
        expected = expected_folds(cell)
        self.uars += [float(fold["test"]["uar"]) for fold in folds]
        self.tests += [fold["test"] for fold in folds]
        self.folds_done += len(folds)
        self.folds_expected = (
            None if expected is None or self.folds_expected is None
            else self.folds_expected + expected
        )  # fmt: skip
        self.seconds += sum(row["seconds"] for fold in folds for row in fold["history"])
        self.classes |= {len(fold["test"]["confusion"]) for fold in folds}
        count = trainable_parameters(cell.run)
        if count is not None:
            self.trainable.add(count)


@dataclass
class Report:
    """The table's axes and entries, and the Markdown and CSV text written from them."""

    rows: tuple[str, list[str]]
    columns: tuple[str | None, list[str]]
    entries: dict[tuple[str, str], Entry]
    markdown: str
    csv: str


def build_report(grid: Grid) -> Report:
    """Gather every cell's finished folds into the table spanned by the report's two axes."""
    row_key, column_key = report_axes(grid)
    row_values = _labels(grid, row_key)
    column_values = _labels(grid, column_key) if column_key else ["UAR"]
    entries = {(r, c): Entry() for r in row_values for c in column_values}
    for cell in grid.cells:
        row = cell_label(cell.assignment[row_key])
        column = cell_label(cell.assignment[column_key]) if column_key else "UAR"
        entries[(row, column)].add(cell)
    if grid.settings.paper is not None:
        for (row, column), entry in entries.items():
            entry.paper = grid.settings.paper.uar.get(row, {}).get(column)
    rows, columns = (row_key, row_values), (column_key, column_values)
    return Report(
        rows,
        columns,
        entries,
        _markdown(grid, rows, columns, entries),
        _csv(rows, columns, entries),
    )


def write_report(grid: Grid) -> tuple[Report, list[Path]]:
    """Write report.md, report.csv and report.png into the grid's output_dir."""
    report = build_report(grid)
    markdown, table, figure = (grid.output_dir / name for name in REPORT_FILES)
    write_atomic(markdown, report.markdown)
    write_atomic(table, report.csv)
    save_figure(figure, report_figure(report, str(grid.output_dir)))
    return report, [markdown, table, figure]


def report_axes(grid: Grid) -> tuple[str, str | None]:
    """The rows' and columns' axes: the grid's choice, else methods by backbones where those
    are axes, else the first axes other than folds and seeds (which entries pool by default);
    without a second such axis the table has one column."""
    spanning = [key for key in grid.settings.axes if key not in POOLED] or list(grid.settings.axes)
    chosen = grid.settings.report
    rows = chosen.rows or ("model.method" if "model.method" in spanning else spanning[0])
    others = [key for key in spanning if key != rows]
    default_columns = "model.backbone" if "model.backbone" in others else next(iter(others), None)
    return rows, chosen.columns or default_columns


def finished_folds(cell: Cell) -> list[dict[str, Any]]:
    """The results of the cell's finished folds: all of them once the run is complete."""
    return cell.run.fold_results()


def expected_folds(cell: Cell) -> int | None:
    """How many folds the cell runs: its data.folds, else the prepared corpus's fold count;
    None while that corpus is not prepared yet (and the run not complete)."""
    if cell.complete:
        return len(finished_folds(cell))
    data = cell.config.data
    if data.folds is not None:
        return len(data.folds)
    for folder in (Path(data.corpus), data.prepared_dir or Path("prepared") / data.corpus):
        if (folder / MANIFEST_FILE).is_file() and (folder / FOLDS_FILE).is_file():
            return len(json.loads((folder / FOLDS_FILE).read_text())["folds"])
    return None


def trainable_parameters(run: RunDir) -> int | None:
    """Trainable parameters of a cell, counted in a saved model's trainable weights (the
    same for every fold of a run); None before any fold has saved its model."""
    for model in run.saved_models():
        with safe_open(str(model / WEIGHTS_FILE), framework="pt") as tensors:
            return sum(math.prod(tensors.get_slice(k).get_shape()) for k in tensors.keys())  # noqa: SIM118
    return None


def report_figure(report: Report, title: str) -> Figure:
    """Grouped bars: test UAR (mean ± std) of each row value, one bar per column value; an
    incomplete entry has no bar but a note; the paper's numbers are black marks; a dotted
    line is chance (100 % / classes, when every finished fold has the same classes)."""
    (row_key, rows), (column_key, columns) = report.rows, report.columns
    figure = Figure(figsize=(max(6.0, 1.2 + 0.5 * len(rows) * len(columns)), 4.2))
    axes = figure.subplots()
    width = 0.8 / len(columns)
    for index, column in enumerate(columns):
        positions = np.arange(len(rows)) + (index - (len(columns) - 1) / 2) * width
        entries = [report.entries[(row, column)] for row in rows]
        heights = [entry.mean if entry.complete else 0.0 for entry in entries]
        errors = [entry.std if entry.complete else 0.0 for entry in entries]
        shown = [entry.complete for entry in entries]
        axes.bar(
            positions[shown], np.array(heights)[shown], width * 0.95,
            yerr=np.array(errors)[shown], capsize=3, label=column, color=f"C{index}",
        )  # fmt: skip
        for position, entry in zip(positions, entries, strict=True):
            if not entry.complete:
                axes.text(
                    position, 1, f"incomplete {entry.folds_done}/{entry.folds_expected or '?'}",
                    rotation=90, ha="center", va="bottom", fontsize=7, color="grey",
                )  # fmt: skip
            if entry.paper is not None:
                axes.plot(position, entry.paper, "k_", markersize=12, markeredgewidth=2)
    if any(entry.paper is not None for entry in report.entries.values()):
        axes.plot([], [], "k_", markersize=12, markeredgewidth=2, label="paper")
    classes = {count for entry in report.entries.values() for count in entry.classes}
    if len(classes) == 1:  # chance UAR: every class's recall at 1 / classes
        chance = 100 / classes.pop()
        axes.axhline(
            chance, color="grey", linestyle=":", zorder=3, label=f"chance ({chance:.0f} %)"
        )
    axes.set_xticks(np.arange(len(rows)), rows)
    axes.set_xlim(-0.5, len(rows) - 0.5)  # room for every group, drawn or not
    axes.set_xlabel(row_key)
    axes.set_ylabel("test UAR (%)")
    axes.set_ylim(0, 100)
    axes.set_title(title)
    axes.legend(title=column_key, fontsize=8, loc="upper left", ncols=min(len(columns) + 1, 4))
    figure.tight_layout()
    return figure


def _labels(grid: Grid, key: str) -> list[str]:
    return [cell_label(value) for value in grid.settings.axes[key]]


def _uar_text(entry: Entry) -> str:
    if entry.complete:
        text = f"{entry.mean:.1f} ± {entry.std:.1f} (n={len(entry.uars)})"
    else:
        text = f"incomplete: {entry.folds_done}/{entry.folds_expected or '?'} folds"
    return text if entry.paper is None else f"{text}; paper {entry.paper:.1f}"


def _emobox_text(entry: Entry) -> str:
    """EmoBox's three scores as its leaderboard shows them (see `emobox_scores`)."""
    if not entry.complete:
        return f"incomplete: {entry.folds_done}/{entry.folds_expected or '?'} folds"
    return " / ".join(f"{value:.2f}" for value in emobox_scores(entry.tests).values())


def _trainable_text(entry: Entry) -> str:
    if not entry.trainable:
        return "—"
    low, high = min(entry.trainable), max(entry.trainable)
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def _seconds_text(entry: Entry) -> str:
    if not entry.folds_done:
        return "—"
    seconds = entry.seconds
    text = (
        f"{seconds:.0f} s" if seconds < 120
        else f"{seconds / 60:.1f} min" if seconds < 7200
        else f"{seconds / 3600:.1f} h"
    )  # fmt: skip
    return text if entry.complete else f"{text} so far"


def _markdown(
    grid: Grid,
    rows: tuple[str, list[str]],
    columns: tuple[str | None, list[str]],
    entries: dict[tuple[str, str], Entry],
) -> str:
    (row_key, row_values), (column_key, column_values) = rows, columns
    pooled = [key for key in grid.settings.axes if key not in (row_key, column_key)]
    over = " and ".join(["folds", *pooled])
    sections = [
        (f"Test UAR (%), mean ± std over {over}", _uar_text),
        (f"EmoBox leaderboard: WA / UA / macro-F1 (%), mean over {over}", _emobox_text),
        ("Trainable parameters", _trainable_text),
        ("Training time (sum of epoch times)", _seconds_text),
    ]
    header = f"| {row_key} \\ {column_key or ''} | " + " | ".join(column_values) + " |"
    rule = "|" + "---|" * (len(column_values) + 1)
    lines = [f"# {grid.output_dir}", ""]
    for title, text in sections:
        lines += [f"## {title}", "", header, rule]
        for row in row_values:
            cells = [text(entries[(row, column)]) for column in column_values]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    if grid.settings.paper is not None:
        lines.append(f"Paper: {grid.settings.paper.source}")
    return "\n".join(lines).rstrip("\n") + "\n"


def _emobox_cells(entry: Entry) -> tuple[float, float]:
    scores = emobox_scores(entry.tests)
    return scores["WA"], scores["macro-F1"]


def _csv(
    rows: tuple[str, list[str]],
    columns: tuple[str | None, list[str]],
    entries: dict[tuple[str, str], Entry],
) -> str:
    header = [
        rows[0], columns[0] or "column", "status", "folds_done", "folds_expected",
        "uar_mean_percent", "uar_std_percent", "n", "trainable_parameters", "train_seconds",
        "paper_uar_percent", "wa_mean_percent", "macro_f1_mean_percent",
    ]  # fmt: skip
    table: list[Sequence[object]] = []
    for (row, column), entry in entries.items():
        done = entry.complete
        table.append([
            row, column, "complete" if done else "incomplete", entry.folds_done,
            "" if entry.folds_expected is None else entry.folds_expected,
            entry.mean if done else "", entry.std if done else "", len(entry.uars),
            ";".join(str(count) for count in sorted(entry.trainable)),
            round(entry.seconds, 3), "" if entry.paper is None else entry.paper,
            *(_emobox_cells(entry) if done else ("", "")),
        ])  # fmt: skip
    return csv_text(header, table)
