"""Where a fold's numbers are reported besides its files: the trackers of ``report_to``.

TensorBoard (the default) is written as it always was: one event folder per fold
(``tensorboard/<fold>/``), truncated at the first epoch of a resumed run, so a resumption leaves
no duplicate points. Every other tracker goes through Accelerate's tracking API
(`accelerate.tracking`), one tracker run per fold: named ``<output_dir>:<fold>``, with the
resolved configuration as its parameters (dotted keys, so a sweep's cells, each its own run,
differ in the grid's keys), each epoch's history row at ``step = epoch``, and at the end the
tested epoch's scores (``test_<metric>``); a tracker that takes files (MLflow) also gets the
fold's pictures. A fold that stops with an error ends its MLflow run as ``FAILED``; resumed, it
opens a new tracker run and logs the epochs it restored first, so the new run is complete.

Only the main process reports.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from accelerate import tracking
from accelerate.utils import imports

from peft_ser.config import RunConfig
from peft_ser.runs.layout import FoldDir
from peft_ser.utils.errors import UserError

PACKAGES = {
    "mlflow": ("mlflow", "mlflow-skinny"),
    "wandb": ("wandb", "wandb"),
    "comet_ml": ("comet_ml", "comet-ml"),
    "aim": ("aim", "aim"),
    "clearml": ("clearml", "clearml"),
    "dvclive": ("dvclive", "dvclive"),
}
"""The trackers ``report_to`` takes beside TensorBoard: their module and a pip name."""


log = logging.getLogger(__name__)


class TrackerError(UserError):
    """A tracker of ``report_to`` cannot be used here (its package is not installed, or it
    refused to start a run)."""


def check_trackers(report_to: Sequence[str]) -> None:
    """Refuse, before any training, a tracker whose package is missing."""
    for name in report_to:
        if name in PACKAGES and not getattr(imports, f"is_{name}_available")():
            module, package = PACKAGES[name]
            raise TrackerError(
                f"report_to {name}: the {module} package is not installed (pip install {package})"
            )


class FoldReporters:
    """The trackers of one fold, open from its first epoch to its test scores."""

    def __init__(
        self,
        config: RunConfig,
        folder: FoldDir,
        fold: str,
        restored: Sequence[dict[str, Any]],
        enabled: bool,
    ) -> None:
        names = config.report_to if enabled else []
        self.writer = None
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(folder.tensorboard), purge_step=len(restored) + 1)
        self.folder = folder
        run_name = f"{config.output_dir}:{fold}"
        self.trackers = [_tracker(name, run_name, folder) for name in names if name in PACKAGES]
        parameters = _flat(config.model_dump(mode="json"))
        started: list[tracking.GeneralTracker] = []
        for tracker in self.trackers:
            try:
                tracker.start()
                tracker.store_init_configuration(parameters)
            except Exception as error:  # the tracker's own: a server down, a store refused
                self.trackers = started
                self.finish(None)
                raise TrackerError(f"report_to {tracker.name}: {_first_line(error)}") from None
            started.append(tracker)
        for row in restored:
            self._track(row)

    def epoch(self, row: dict[str, Any]) -> None:
        """Report one epoch's history row."""
        if self.writer is not None:
            for name, value in row.items():
                if name != "epoch":
                    self.writer.add_scalar(name, value, row["epoch"])
            self.writer.flush()
        self._track(row)

    def _track(self, row: dict[str, Any]) -> None:
        """Log a history row; a tracker that fails mid-run is dropped with a warning, so that
        it costs its own record, not the training."""
        values = {name: value for name, value in row.items() if name != "epoch"}
        for tracker in list(self.trackers):
            try:
                tracker.log(values, step=row["epoch"])
            except Exception as error:
                log.warning(
                    "report_to %s: %s; no longer reporting this fold to it",
                    tracker.name, _first_line(error),
                )  # fmt: skip
                self.trackers.remove(tracker)

    def finish(self, result: dict[str, Any] | None) -> None:
        """Report the fold's test scores and pictures (``result``: its results; None when it
        failed) and close every tracker."""
        if self.writer is not None:
            self.writer.close()
        for tracker in self.trackers:
            if result is not None:
                test = {
                    f"test_{name}": value
                    for name, value in result["test"].items()
                    if isinstance(value, int | float) and not isinstance(value, bool)
                }
                tracker.log(test, step=result["best_epoch"])
                if hasattr(tracker, "log_artifact"):
                    for picture in sorted(self.folder.path.glob("*.png")):
                        tracker.log_artifact(str(picture))
            if result is None and tracker.name == "mlflow":
                import mlflow  # Accelerate's finish() would mark the run a success

                mlflow.end_run(status="FAILED")
            else:
                tracker.finish()


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _tracker(name: str, run_name: str, folder: FoldDir) -> tracking.GeneralTracker:
    if name == "mlflow":
        return tracking.MLflowTracker(experiment_name="peft-ser", run_name=run_name)
    if name == "aim":
        return tracking.AimTracker(run_name, logging_dir=str(folder.path.parent / "aim"))
    return tracking.LOGGER_TYPE_TO_CLASS[name](run_name)


def _flat(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested settings document as dotted keys (lists as text), as trackers take parameters."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            flat[f"{prefix}{key}"] = str(value)
        else:
            flat[f"{prefix}{key}"] = value
    return flat
