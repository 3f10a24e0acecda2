"""What `evaluate` and the cross-corpus matrix score: a run folder (each completed fold's saved
model), a saved model folder (`SERModel.save` output), a model-zoo name or a Hub repo id.

A source is told apart in the order `load_model` reads names
(`peft_ser.inference.hub.model_kind`): a folder holding a run's config is a run, a folder
holding a saved model's config is a model, then a zoo name, then a Hub repo id (``org/name``,
fetched by `load_model`). Anything else is refused in one line that says which of these it is
not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from peft_ser.data.manifest import Fold
from peft_ser.inference.hub import model_kind
from peft_ser.models.ser_model import CONFIG_FILE
from peft_ser.runs.layout import RunDir
from peft_ser.utils.errors import UserError, suggest
from peft_ser.zoo import ZOO

ModelSource = RunDir | str
"""A run, or one model: a saved model folder's path, a zoo name or a Hub repo id, as
`load_model` takes it."""


def model_source(source: str | Path, refusal: str) -> ModelSource:
    """The run or the model ``source`` names; a `UserError` otherwise.

    ``refusal`` is the command's words for a folder that holds neither a run nor a model
    (``"neither a run directory nor a saved model"``), after the folder's name.
    """
    name, path = str(source), Path(source)
    kind = model_kind(name, ZOO)
    if kind == "path" and path.is_dir():
        run = RunDir(path)
        if run.is_run:
            return run
        if (path / CONFIG_FILE).is_file():
            return name
        raise UserError(f"{path}: {refusal}")
    if kind == "path":
        raise UserError(f"{path}: is a file; give a run directory, a saved model or a zoo name")
    if kind != "unknown":
        return name
    raise UserError(
        f"{name}: no such folder, and no zoo model of that name{suggest(name, ZOO)}; give a run "
        f"directory, a saved model folder, a Hub repo id (org/name) or a zoo name "
        f"({', '.join(sorted(ZOO))})"
    )


def run_models(run: RunDir, folds: Sequence[Fold]) -> list[tuple[Fold, Path]]:
    """The saved model of each of ``folds`` that completed one, in the folds' order; a
    `UserError` when none did."""
    found = [(fold, run.fold(fold.name).model) for fold in folds if run.fold(fold.name).has_model]
    if not found:
        raise UserError(f"{run.path}: no completed fold with a saved model")
    return found
