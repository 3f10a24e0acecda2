"""Checkpoint files without pickles: tensors to safetensors, everything else to JSON.

A checkpoint holds the trainable weights (``SERModel.save``), the optimiser state split into
tensors and JSON, and the scheduler state. It holds no random generator state: every epoch's
random numbers come from ``(seed, epoch)`` (`peft_ser.training.loop.epoch_streams`), so a
resumed run draws what the uninterrupted one drew without it.

A checkpoint is written whole into a temporary sibling folder and renamed into place, and only
then does ``last.json`` point at it: a run killed (or refused by a full disk) at any instant
leaves the previous checkpoint as it was. On resume a damaged checkpoint (a file that is not
JSON, a truncated tensor file, a pointer to a folder that is gone) is named in a warning and
the newest intact one is used instead; with none intact the fold starts again from its first
epoch (it has nothing worth keeping).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as serialize
from torch.optim import Optimizer

from peft_ser.models.ser_model import WEIGHTS_FILE, SERModel, read_weights
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import storage_errors, write_atomic

log = logging.getLogger(__name__)

OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"


class DamagedCheckpoint(Exception):
    """A checkpoint that cannot be resumed from; the message says which file and why."""


def pointer(path: Path) -> str | None:
    """The checkpoint folder a pointer file names; None when there is no such file.

    Raises `DamagedCheckpoint` for a pointer that is not ``{"dir": "<name>"}`` JSON.
    """
    if not path.is_file():
        return None
    try:
        name = json.loads(path.read_text())["dir"]
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise DamagedCheckpoint(f"{path} is not a checkpoint pointer ({error})") from None
    if not isinstance(name, str) or "/" in name or name.startswith("."):
        raise DamagedCheckpoint(f"{path} names no checkpoint folder ({name!r})")
    return name


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write tensors as safetensors bytes from Python, so that a full disk is an `OSError`."""
    buffer = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic(path, serialize(buffer))


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[Any]]:
    """Split an optimiser state_dict into tensors (safetensors) and JSON-ready groups."""
    tensors = {
        f"{param}.{name}": value if torch.is_tensor(value) else torch.tensor(value)
        for param, slots in state["state"].items()
        for name, value in slots.items()
    }
    return tensors, state["param_groups"]


def unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[Any]) -> dict[str, Any]:
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        param, name = key.split(".", 1)
        slots.setdefault(int(param), {})[name] = value
    return {"state": slots, "param_groups": groups}


@dataclass
class Progress:
    """Where a fold's training stands: epochs done, their history, the best dev epoch so far
    and its dev score. ``best_uar`` keeps its first name (checkpoints hold it so) but is the
    score of the run's selection metric (`peft_ser.config.selection`), which a resume cannot
    change (the run's config is compared first)."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_uar: float = -1.0


@dataclass
class _Loaded:
    """A checkpoint read and checked against the model and optimiser, not yet applied."""

    progress: Progress
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]


class FoldCheckpoints:
    """``<fold>/checkpoints/epoch-NNN/`` plus the ``last.json`` and ``best.json`` pointers.

    An epoch's checkpoint becomes "the last one" only when ``last.json`` is replaced after the
    checkpoint is complete, so a run killed at any instant resumes from its last completed
    epoch. Only the last and the best checkpoints are kept.
    """

    def __init__(self, fold_dir: Path, accelerator: Accelerator) -> None:
        self.fold_dir = fold_dir
        self.root = fold_dir / "checkpoints"
        self.accelerator = accelerator

    def save(
        self, progress: Progress, model: SERModel, optimizer: Optimizer, scheduler: Any
    ) -> None:
        """Write this epoch's checkpoint, then point last.json (and best.json) at it.

        A full or read-only disk stops the run with a `StorageError` naming the file; the
        earlier checkpoints and pointers are left as they were (the run can be resumed).
        """
        if self.accelerator.is_main_process:
            with storage_errors(
                f"the checkpoints of earlier epochs in {self.root} are kept; make room and "
                "resume the run with --resume"
            ):
                self._write(progress, model, optimizer, scheduler)
        self.accelerator.wait_for_everyone()

    def _write(
        self, progress: Progress, model: SERModel, optimizer: Optimizer, scheduler: Any
    ) -> None:
        target = self.root / f"epoch-{progress.epoch:03d}"
        temporary = self.root / f".{target.name}.tmp"
        shutil.rmtree(temporary, ignore_errors=True)  # left by a run killed while saving
        try:
            model.save(temporary)
            tensors, groups = flatten_optimizer(optimizer.state_dict())
            save_tensors(temporary / OPTIMIZER_FILE, tensors)
            state = {
                **asdict(progress),
                "optimizer_groups": groups,
                "scheduler": scheduler.state_dict(),
            }
            write_atomic(temporary / STATE_FILE, json.dumps(state, indent=1) + "\n")
            if target.exists():  # this epoch saved by a killed run, or a damaged checkpoint
                shutil.rmtree(target)
            temporary.rename(target)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        if progress.best_epoch == progress.epoch:
            write_atomic(self.fold_dir / "best.json", json.dumps({"dir": target.name}) + "\n")
        write_atomic(self.fold_dir / "last.json", json.dumps({"dir": target.name}) + "\n")
        self._prune({target.name, f"epoch-{progress.best_epoch:03d}"})

    def _prune(self, keep: set[str]) -> None:
        for path in self.root.iterdir():
            if path.name not in keep:
                shutil.rmtree(path, ignore_errors=True)

    def restore(self, model: SERModel, optimizer: Optimizer, scheduler: Any) -> Progress:
        """Load the newest intact checkpoint into the given objects (none: a fresh start).

        ``last.json`` names the checkpoint to resume from; when it, or the checkpoint it names,
        is damaged, the other checkpoints are tried, newest first, each damaged one named in a
        warning. Without ``last.json`` the fold has not completed an epoch: it starts afresh.
        """
        if not (self.fold_dir / "last.json").exists():
            return Progress()
        damaged = []
        for source in self._candidates():
            try:
                loaded = self._read(source, model, optimizer)
            except DamagedCheckpoint as why:
                log.warning("%s: damaged checkpoint: %s", self.fold_dir.name, why)
                damaged.append(source.name)
                continue
            if damaged:
                log.warning(
                    "%s: resuming from %s, the newest intact checkpoint",
                    self.fold_dir.name, source,
                )  # fmt: skip
            model.load_trainable_state_dict(loaded.weights)
            optimizer.load_state_dict(loaded.optimizer)
            scheduler.load_state_dict(loaded.scheduler)
            return loaded.progress
        log.warning(
            "%s: no intact checkpoint in %s (damaged: %s); training the fold from its "
            "first epoch",
            self.fold_dir.name, self.root, ", ".join(damaged) or "last.json",
        )  # fmt: skip
        return Progress()

    def _candidates(self) -> list[Path]:
        """The checkpoint ``last.json`` names first, then every other one, newest first."""
        folders = sorted(
            (p for p in self.root.glob("epoch-*") if p.is_dir()), key=lambda p: p.name, reverse=True
        )
        try:
            named = pointer(self.fold_dir / "last.json")
        except DamagedCheckpoint as why:
            log.warning("%s: damaged checkpoint pointer: %s", self.fold_dir.name, why)
            return folders
        if named is not None and not (self.root / named).is_dir():
            log.warning(
                "%s: %s points at %s, which is gone",
                self.fold_dir.name, self.fold_dir / "last.json", self.root / named,
            )  # fmt: skip
            return folders
        first = [self.root / named] if named is not None else []
        return first + [p for p in folders if p.name != named]

    def _read(self, source: Path, model: SERModel, optimizer: Optimizer) -> _Loaded:
        """Everything a resume needs from ``source``, checked against the model and the
        optimiser before anything is changed; `DamagedCheckpoint` when any part fails."""
        state = _read_state(source)
        progress = _progress_of(state, source)
        try:
            weights = read_weights(source / WEIGHTS_FILE)
            if self.best(progress) != source:  # the fold tests the best one at the end
                read_weights(self.best(progress) / WEIGHTS_FILE)
        except UserError as error:  # names the file
            raise DamagedCheckpoint(str(error)) from None
        try:
            tensors = load_file(source / OPTIMIZER_FILE)
        except (SafetensorError, OSError) as error:
            raise DamagedCheckpoint(f"{source / OPTIMIZER_FILE}: {error}") from None
        _check_weights(weights, model, source)
        optimizer_state = unflatten_optimizer(tensors, state["optimizer_groups"])
        _check_optimizer(optimizer_state, optimizer, source / OPTIMIZER_FILE)
        if not isinstance(state["scheduler"], dict):
            raise DamagedCheckpoint(f"{source / STATE_FILE}: the scheduler state is not a table")
        return _Loaded(progress, weights, optimizer_state, state["scheduler"])

    def best(self, progress: Progress) -> Path:
        """The checkpoint folder of the best dev epoch."""
        return self.root / f"epoch-{progress.best_epoch:03d}"

    def remove(self) -> None:
        """Drop the checkpoints and pointers once the fold's results are written."""
        shutil.rmtree(self.root, ignore_errors=True)
        for name in ("last.json", "best.json"):
            (self.fold_dir / name).unlink(missing_ok=True)


def _read_state(source: Path) -> dict[str, Any]:
    path = source / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (ValueError, OSError) as error:
        raise DamagedCheckpoint(f"{path}: not readable JSON ({error})") from None
    missing = {"epoch", "history", "best_epoch", "best_uar", "optimizer_groups", "scheduler"}
    missing -= set(state) if isinstance(state, dict) else set()
    if missing:
        raise DamagedCheckpoint(f"{path}: missing {', '.join(sorted(missing))}")
    return dict(state)


def _progress_of(state: dict[str, Any], source: Path) -> Progress:
    """The progress a state records, checked to be the one of its folder's epoch."""
    epoch, history, best = state["epoch"], state["history"], state["best_epoch"]
    consistent = (
        isinstance(epoch, int)
        and source.name == f"epoch-{epoch:03d}"
        and isinstance(history, list)
        and len(history) == epoch
        and isinstance(best, int)
        and 1 <= best <= epoch
        and isinstance(state["best_uar"], int | float)
    )
    if not consistent:
        raise DamagedCheckpoint(f"{source / STATE_FILE}: its progress does not fit {source.name}")
    return Progress(epoch, history, best, float(state["best_uar"]))


def _check_weights(weights: dict[str, torch.Tensor], model: SERModel, source: Path) -> None:
    expected = model.trainable_state_dict()
    if weights.keys() != expected.keys() or any(
        weights[k].shape != expected[k].shape for k in expected
    ):
        raise DamagedCheckpoint(f"{source / WEIGHTS_FILE}: the weights do not fit this model")


def _check_optimizer(state: dict[str, Any], optimizer: Optimizer, path: Path) -> None:
    """What `Optimizer.load_state_dict` would refuse halfway, and non-finite moments."""
    groups = state["param_groups"]
    ours = optimizer.state_dict()["param_groups"]
    if not isinstance(groups, list) or [len(g.get("params", ())) for g in groups] != [
        len(g["params"]) for g in ours
    ]:
        raise DamagedCheckpoint(f"{path}: the parameter groups do not fit this optimiser")
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    for index, slots in state["state"].items():
        for name, tensor in slots.items():
            fits = index < len(parameters) and (
                tensor.dim() == 0 or tensor.shape == parameters[index].shape
            )
            if not fits or not bool(torch.isfinite(tensor).all()):
                raise DamagedCheckpoint(f"{path}: {index}.{name} does not fit parameter {index}")


def has_checkpoint(fold_dir: Path) -> bool:
    """Whether a fold has completed at least one epoch (and can be resumed)."""
    return (fold_dir / "last.json").is_file()
