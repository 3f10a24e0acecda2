"""Executors: who trains a grid's pending cells, and where.

Every executor runs the same job, `train_cell` (train or resume one cell's run directory), so
a cell trained on a laptop, in one of several local processes or as a task of a SLURM array
is the same run directory with the same files. Cells already complete are never handed to an
executor, which is what makes rerunning a sweep continue it.

* ``local``: one cell after another in this process, or ``workers`` processes side by side,
  each with its own share of the GPUs (``CUDA_VISIBLE_DEVICES``); a failed cell is reported
  and the others go on.
* ``slurm``: one job array through submitit (partition, time, GPUs, CPUs, memory from the
  grid file). submitit's own local executor (``cluster: local``) runs the same array on this
  machine, to rehearse a grid file before the cluster.

Adding an executor means one function taking (grid, pending cells, outcome) and one line in
`EXECUTOR_RUNNERS` here, and its settings class in `grid`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peft_ser.config import RunConfig, with_defaults
from peft_ser.sweep.grid import (
    Cell,
    Grid,
    GridError,
    LocalExecutorConfig,
    SlurmExecutorConfig,
)
from peft_ser.training.run import config_differences

log = logging.getLogger(__name__)

LOGS = "logs"
"""Folder under a grid's output_dir with each cell's output when it runs in its own process."""


@dataclass
class SweepOutcome:
    """What a sweep did: cells skipped as complete, trained, failed (with why), or submitted."""

    skipped: list[str] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    submitted: dict[str, str] = field(default_factory=dict)  # cell -> scheduler job id


def train_cell(config: RunConfig) -> str:
    """The job of one cell, in whichever process runs it: train its run directory, resuming
    whatever an earlier, interrupted attempt left; returns the run directory."""
    from peft_ser.training import train

    train(config, resume=True)
    return str(config.output_dir)


def run_sweep(grid: Grid) -> SweepOutcome:
    """Hand the grid's incomplete cells to its executor; complete cells are skipped.

    A complete cell trained with other settings than the grid now gives it (an edited base or
    overrides) is refused before anything runs: skipping it would report the old settings'
    result under the new grid.
    """
    refuse_changed_cells(grid)
    outcome = SweepOutcome(skipped=[cell.name for cell in grid.cells if cell.complete])
    pending = [cell for cell in grid.cells if not cell.complete]
    log.info(
        "sweep %s: %d cells, %d complete, %d to run",
        grid.output_dir, len(grid.cells), len(outcome.skipped), len(pending),
    )  # fmt: skip
    if pending:
        EXECUTOR_RUNNERS[grid.settings.executor.name](grid, pending, outcome)
    return outcome


def _with_corpus_facts(wanted: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """The grid's config with what training takes from the corpus as the saved run has it: the
    labels always, the task and the attribute names where the grid leaves them unset."""
    model, trained = wanted["model"], saved.get("model", {})
    model["labels"] = trained.get("labels")
    for key in ("task", "attributes"):
        if not model.get(key):
            model[key] = trained.get(key)
    return wanted


def refuse_changed_cells(grid: Grid) -> None:
    """A `GridError` naming each complete cell whose saved config differs from the grid's."""
    changed = []
    for cell in grid.cells:
        if not (cell.complete and cell.run.is_run):
            continue
        saved = with_defaults(cell.run.read_config_document())  # keys added since: defaults
        wanted = _with_corpus_facts(cell.config.model_dump(mode="json"), saved)
        differences = config_differences(saved, wanted)
        if differences:
            changed.append(f"{cell.name} ({', '.join(differences)})")
    if changed:
        raise GridError(
            f"{grid.output_dir}: complete cells were trained with other settings than the grid "
            f"gives them now: {'; '.join(changed)}; restore those settings, or use another "
            "output_dir for the changed grid"
        )


def run_local(grid: Grid, pending: Sequence[Cell], outcome: SweepOutcome) -> None:
    settings = grid.settings.executor
    assert isinstance(settings, LocalExecutorConfig)
    if settings.workers == 1:
        for number, cell in enumerate(pending, 1):
            log.info("cell %d/%d %s", number, len(pending), cell.name)
            _run_in_process(cell, outcome)
        return
    shares = device_shares(settings.workers, settings.devices or _visible_devices())
    queue = list(pending)
    lock = threading.Lock()

    def worker(share: list[str] | None) -> None:
        while True:
            with lock:
                if not queue:
                    return
                cell = queue.pop(0)
            _run_in_subprocess(cell, share, grid.output_dir / LOGS, outcome, lock)

    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def device_shares(workers: int, devices: Sequence[str]) -> list[list[str] | None]:
    """Worker i's GPUs: every ``workers``-th device from the i-th; None for all (CPU only)."""
    if not devices:
        return [None] * workers
    if len(devices) < workers:
        raise GridError(
            f"executor.workers: {workers} workers but only {len(devices)} devices "
            f"({', '.join(devices)}); use at most {len(devices)} workers"
        )
    return [list(devices[index::workers]) for index in range(workers)]


def _visible_devices() -> list[str]:
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def _run_in_process(cell: Cell, outcome: SweepOutcome) -> None:
    try:
        train_cell(cell.config)
    except Exception as error:  # one cell's failure must not end the sweep
        log.exception("cell %s failed", cell.name)
        outcome.failed[cell.name] = _first_line(str(error)) or type(error).__name__
    else:
        outcome.trained.append(cell.name)


def _run_in_subprocess(
    cell: Cell,
    devices: list[str] | None,
    logs: Path,
    outcome: SweepOutcome,
    lock: threading.Lock,
) -> None:
    """Train ``cell`` in a fresh Python process that sees only ``devices``; its output goes
    to ``logs/<cell>.log``."""
    env = dict(os.environ)
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{cell.name}.log"
    log.info("cell %s: started on %s (log: %s)", cell.name, devices or "CPU", log_path)
    with log_path.open("w") as output:
        done = subprocess.run(
            [sys.executable, "-m", "peft_ser.sweep.worker"],
            input=cell.config.model_dump_json(),
            text=True,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
            check=False,
        )
    with lock:
        if done.returncode == 0:
            outcome.trained.append(cell.name)
        else:
            lines = log_path.read_text().strip().splitlines()
            outcome.failed[cell.name] = f"{lines[-1] if lines else 'no output'} (see {log_path})"


def run_slurm(grid: Grid, pending: Sequence[Cell], outcome: SweepOutcome) -> None:
    """Submit the pending cells as one job array; wait for it only when the grid asks."""
    try:
        import submitit
    except ImportError:
        raise GridError("executor slurm needs submitit: pip install 'peft-ser[cluster]'") from None

    settings = grid.settings.executor
    assert isinstance(settings, SlurmExecutorConfig)
    folder = settings.folder or grid.output_dir / ".submitit"
    executor = submitit.AutoExecutor(folder=folder, cluster=settings.cluster)
    executor.update_parameters(**_submitit_parameters(settings))
    jobs = executor.map_array(train_cell, [cell.config for cell in pending])
    for cell, job in zip(pending, jobs, strict=True):
        outcome.submitted[cell.name] = str(job.job_id)
        log.info("cell %s: job %s", cell.name, job.job_id)
    if not settings.wait:
        return
    for cell, job in zip(pending, jobs, strict=True):
        try:
            job.result()
        except Exception as error:  # submitit re-raises the job's failure with its traceback
            outcome.failed[cell.name] = f"job {job.job_id} failed (see {job.paths.stderr})"
            log.error("cell %s: %s", cell.name, _first_line(str(error)))
        else:
            outcome.trained.append(cell.name)


def _submitit_parameters(settings: SlurmExecutorConfig) -> dict[str, object]:
    """submitit's names for the grid file's executor settings (generic, then SLURM-only)."""
    parameters: dict[str, object] = {
        "name": "peft-ser-sweep",
        "timeout_min": settings.time_min,
        "gpus_per_node": settings.gpus_per_node,
        "cpus_per_task": settings.cpus_per_task,
        "tasks_per_node": 1,
        "nodes": 1,
    }
    if settings.mem_gb is not None:
        parameters["mem_gb"] = settings.mem_gb
    slurm = {
        "slurm_partition": settings.partition,
        "slurm_account": settings.account,
        "slurm_qos": settings.qos,
        "slurm_array_parallelism": settings.max_parallel,
    }
    parameters.update({key: value for key, value in slurm.items() if value is not None})
    if settings.additional:
        parameters["slurm_additional_parameters"] = dict(settings.additional)
    return parameters


def _first_line(text: str) -> str:
    return next((line for line in text.strip().splitlines() if line.strip()), "")


EXECUTOR_RUNNERS: dict[str, Callable[[Grid, Sequence[Cell], SweepOutcome], None]] = {
    "local": run_local,
    "slurm": run_slurm,
}
