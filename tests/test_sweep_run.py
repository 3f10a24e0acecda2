"""Sweeps of tiny runs: the local and submitit executors, reruns that continue, the report."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _tones import tiny_run

from peft_ser.sweep.executors import run_sweep
from peft_ser.sweep.grid import Grid, GridError, grid_from_document
from peft_ser.sweep.report import build_report, report_figure, write_report

pytestmark = pytest.mark.slow  # every test trains: a grid swept once, or cells in new processes

METHODS = ["frozen", "lora"]
BACKBONES = ["tiny-whisper", "tiny-wavlm"]


def _grid(corpus: Path, out: Path, **settings: Any) -> Grid:
    # one thread: cells in their own processes would otherwise each claim every core
    base = tiny_run(corpus, out, **{"optim.epochs": 1, "data.folds": "1,2", "threads": 1})
    document = {"base": base.model_dump(mode="json"), "output_dir": str(out), **settings}
    return grid_from_document(document)


def _fold_uars(run_dir: Path) -> list[float]:
    paths = sorted(run_dir.glob("fold-*/results.json"))
    return [json.loads(path.read_text())["test"]["uar"] for path in paths]


@pytest.fixture(scope="module")
def swept(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Grid:
    """A 2 × 2 grid (methods × backbones, two folds each) swept once by the local executor."""
    out = tmp_path_factory.mktemp("sweep")
    grid = _grid(
        corpus,
        out,
        axes={"model.method": METHODS, "model.backbone": BACKBONES},
        paper={"source": "a test", "uar": {"lora": {"tiny-wavlm": 61.5}}},
    )
    outcome = run_sweep(grid)
    assert outcome.trained == [cell.name for cell in grid.cells] and not outcome.failed
    return grid


def test_the_report_has_each_cell_with_mean_and_std_over_folds(swept: Grid) -> None:
    report, paths = write_report(swept)
    assert [path.name for path in paths] == ["report.md", "report.csv", "report.png"]
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = csv.DictReader(paths[1].read_text().splitlines())
    rows = {(r["model.method"], r["model.backbone"]): r for r in table}
    assert set(rows) == {(m, b) for m in METHODS for b in BACKBONES}
    lines = report.markdown.splitlines()
    assert lines[lines.index("## Test UAR (%), mean ± std over folds") + 2] == (
        "| model.method \\ model.backbone | tiny-whisper | tiny-wavlm |"
    )
    for cell in swept.cells:
        method, backbone = cell.assignment["model.method"], cell.assignment["model.backbone"]
        uars = 100 * np.array(_fold_uars(cell.run_dir))
        row = rows[(method, backbone)]
        assert row["status"] == "complete" and row["folds_done"] == row["folds_expected"] == "2"
        assert float(row["uar_mean_percent"]) == pytest.approx(uars.mean())
        assert float(row["uar_std_percent"]) == pytest.approx(uars.std())
        assert int(row["trainable_parameters"]) > 0 and float(row["train_seconds"]) > 0
        text = f"{uars.mean():.1f} ± {uars.std():.1f} (n=2)"
        assert text in report.markdown
    assert rows[("lora", "tiny-wavlm")]["paper_uar_percent"] == "61.5"
    assert "; paper 61.5" in report.markdown
    frozen, lora = (int(rows[(m, "tiny-wavlm")]["trainable_parameters"]) for m in METHODS)
    assert lora > frozen  # LoRA adds its matrices to the head's weights


def test_a_rerun_skips_complete_cells_and_resumes_an_incomplete_one(swept: Grid) -> None:
    again = run_sweep(swept)
    assert again.skipped == [cell.name for cell in swept.cells] and not again.trained
    cell = swept.cells[3]
    kept = (cell.run_dir / "fold-fold1" / "results.json").read_text()
    (cell.run_dir / "results.json").unlink()
    (cell.run_dir / "fold-fold2" / "results.json").unlink()
    report, _ = write_report(swept)
    assert "| lora | " in report.markdown and "incomplete: 1/2 folds" in report.markdown
    row = next(r for r in csv.reader(report.csv.splitlines()) if r[:2] == ["lora", "tiny-wavlm"])
    assert row[2:6] == ["incomplete", "1", "2", ""]  # no mean for an incomplete entry
    resumed = run_sweep(swept)
    assert resumed.trained == [cell.name] and len(resumed.skipped) == 3
    assert (cell.run_dir / "fold-fold1" / "results.json").read_text() == kept  # read back
    assert cell.complete


def test_a_cell_never_started_is_incomplete_with_no_folds(swept: Grid, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(swept.output_dir, copy)
    document = swept.settings.model_dump(mode="json")
    document["output_dir"] = str(copy)
    document["axes"]["model.method"].append("adapter")
    report, _ = write_report(grid_from_document(document))
    assert "| adapter | incomplete: 0/2 folds | incomplete: 0/2 folds |" in report.markdown
    assert "; paper 61.5 |" in report.markdown  # beside a measured or an incomplete entry


def test_local_workers_train_cells_in_their_own_processes(corpus: Path, tmp_path: Path) -> None:
    grid = _grid(
        corpus,
        tmp_path / "sweep",
        axes={"model.method": ["frozen"], "data.folds": [1, 2]},
        executor={"name": "local", "workers": 2},
    )
    outcome = run_sweep(grid)
    assert sorted(outcome.trained) == ["method=frozen,folds=1", "method=frozen,folds=2"]
    assert all(cell.complete for cell in grid.cells)
    assert (grid.output_dir / "logs" / "method=frozen,folds=1.log").is_file()
    report, _ = write_report(grid)  # one entry pooling both cells' folds
    uars = 100 * np.array([_fold_uars(cell.run_dir)[0] for cell in grid.cells])
    assert f"{uars.mean():.1f} ± {uars.std():.1f} (n=2)" in report.markdown


def test_the_slurm_path_runs_through_submitits_local_executor(corpus: Path, tmp_path: Path) -> None:
    grid = _grid(
        corpus,
        tmp_path / "sweep",
        axes={"model.method": METHODS},
        overrides={"data.folds": [1]},
        executor={
            "name": "slurm", "cluster": "local", "wait": True, "partition": "gpu",
            "time_min": 5, "gpus_per_node": 0, "cpus_per_task": 1, "max_parallel": 2,
        },
    )  # fmt: skip
    outcome = run_sweep(grid)
    assert sorted(outcome.trained) == ["method=frozen", "method=lora"], outcome.failed
    assert set(outcome.submitted) == {"method=frozen", "method=lora"}
    assert all(cell.complete for cell in grid.cells)
    assert any((grid.output_dir / ".submitit").iterdir())
    assert run_sweep(grid).skipped == ["method=frozen", "method=lora"]  # nothing resubmitted


def test_complete_cells_trained_with_other_settings_are_refused(swept: Grid) -> None:
    document = swept.settings.model_dump(mode="json")
    document["overrides"] = {"optim.epochs": 2, "data.num_workers": 1}  # workers: no matter
    with pytest.raises(GridError, match=r"method=frozen,backbone=tiny-whisper \(optim\.epochs\)"):
        run_sweep(grid_from_document(document))


def test_the_report_figure_draws_chance_for_the_classes_of_its_folds(swept: Grid) -> None:
    figure = report_figure(build_report(swept), "a sweep")
    (axes,) = figure.axes
    (chance,) = [line for line in axes.lines if line.get_label().startswith("chance")]
    assert chance.get_label() == "chance (25 %)" and list(chance.get_ydata()) == [25, 25]
