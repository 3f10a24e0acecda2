"""`peft-ser sweep`: train a grid file's cells, list them, or report their results."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from peft_ser.cli.app import app, log_to_stderr


@app.command("sweep")
def sweep_command(
    grid_file: Annotated[Path, typer.Argument(help="grid file (see configs/paper/)")],
    report: Annotated[
        bool, typer.Option("--report", help="write and print the table and figure; train nothing")
    ] = False,
    list_cells: Annotated[
        bool,
        typer.Option("--list", help="print each cell's run directory and state; train nothing"),
    ] = False,
) -> None:
    """Train every incomplete cell of a grid (complete ones are skipped, so rerunning a sweep
    continues it) on this machine or as a SLURM job array; --report writes the paper-style
    table (Markdown, CSV) and figure (PNG) into the grid's output_dir."""
    from peft_ser.sweep import load_grid
    from peft_ser.sweep.executors import run_sweep
    from peft_ser.sweep.grid import GridError
    from peft_ser.sweep.report import write_report

    grid = load_grid(grid_file)
    if list_cells:
        for cell in grid.cells:
            typer.echo(f"{'complete' if cell.complete else 'pending':<10}{cell.run_dir}")
        return
    if report:
        built, paths = write_report(grid)
        typer.echo(built.markdown)
        typer.echo("written: " + ", ".join(str(path) for path in paths))
        return
    log_to_stderr()
    outcome = run_sweep(grid)
    typer.echo(
        f"{len(grid.cells)} cells: {len(outcome.skipped)} already complete, "
        f"{len(outcome.trained)} trained, {len(outcome.submitted)} submitted, "
        f"{len(outcome.failed)} failed"
    )
    for name, job in outcome.submitted.items():
        typer.echo(f"  job {job}: {name}")
    if outcome.failed:
        failures = "; ".join(f"{name}: {why}" for name, why in outcome.failed.items())
        raise GridError(f"{grid_file}: cells failed ({failures}); rerun the sweep to resume them")
