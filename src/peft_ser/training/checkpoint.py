"""Checkpoint files without pickles: tensors to safetensors, everything else to JSON.

A checkpoint holds the trainable weights (``SERModel.save``), the optimiser state split into
tensors and JSON, the scheduler state, and every random generator a resumed run must restore:
torch's (per process, with CUDA's), Python's and NumPy's legacy global ones.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch.optim import Optimizer

from peft_ser.fileio import write_atomic, write_atomic_with
from peft_ser.model import WEIGHTS_FILE, SERModel, read_weights


def pointer(path: Path) -> str | None:
    return json.loads(path.read_text())["dir"] if path.is_file() else None


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    buffer = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    write_atomic_with(path, lambda temporary: save_file(buffer, temporary))


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[Any]]:
    """Split an optimiser state_dict into tensors (safetensors) and JSON-ready groups."""
    tensors = {
        f"{param}.{name}": value if torch.is_tensor(value) else torch.tensor(value)
        for param, slots in state["state"].items()
        for name, value in slots.items()
    }
    return tensors, state["param_groups"]


def unflatten_optimizer(tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> dict[str, Any]:
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        param, name = key.split(".", 1)
        slots.setdefault(int(param), {})[name] = value
    return {"state": slots, "param_groups": state["optimizer_groups"]}


def torch_rng_state() -> dict[str, torch.Tensor]:
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        states.update({f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return states


def python_rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    name, keys, position, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    return {
        "python": [version, list(internal), gauss],
        "numpy": [name, np.asarray(keys).tolist(), position, has_gauss, cached],
    }


def restore_rng(python_state: dict[str, Any], torch_file: Path) -> None:
    version, internal, gauss = python_state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached = python_state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    states = load_file(torch_file)
    torch.set_rng_state(states["cpu"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all([states[f"cuda{i}"] for i in range(torch.cuda.device_count())])


@dataclass
class Progress:
    """Where a fold's training stands: epochs done, their history, the best dev epoch so far."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    best_uar: float = -1.0


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
        """Write this epoch's checkpoint, then point last.json (and best.json) at it."""
        accelerator = self.accelerator
        target = self.root / f"epoch-{progress.epoch:03d}"
        if accelerator.is_main_process and target.exists():
            shutil.rmtree(target)  # a partial checkpoint of a killed run
        accelerator.wait_for_everyone()
        target.mkdir(parents=True, exist_ok=True)
        save_tensors(target / f"rng-{accelerator.process_index}.safetensors", torch_rng_state())
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            model.save(target)
            tensors, groups = flatten_optimizer(optimizer.state_dict())
            save_tensors(target / "optimizer.safetensors", tensors)
            state = {
                **asdict(progress),
                "optimizer_groups": groups,
                "scheduler": scheduler.state_dict(),
                "python_rng": python_rng_state(),
            }
            write_atomic(target / "state.json", json.dumps(state, indent=1) + "\n")
            if progress.best_epoch == progress.epoch:
                write_atomic(self.fold_dir / "best.json", json.dumps({"dir": target.name}) + "\n")
            write_atomic(self.fold_dir / "last.json", json.dumps({"dir": target.name}) + "\n")
            self._prune()
        accelerator.wait_for_everyone()

    def _prune(self) -> None:
        keep = {pointer(self.fold_dir / "last.json"), pointer(self.fold_dir / "best.json")}
        for path in self.root.iterdir():
            if path.name not in keep:
                shutil.rmtree(path)

    def restore(self, model: SERModel, optimizer: Optimizer, scheduler: Any) -> Progress:
        """Load the last completed epoch's state into the given objects (none: a fresh start)."""
        name = pointer(self.fold_dir / "last.json")
        if name is None:
            return Progress()
        source = self.root / name
        state = json.loads((source / "state.json").read_text())
        model.load_trainable_state_dict(read_weights(source / WEIGHTS_FILE))
        optimizer.load_state_dict(
            unflatten_optimizer(load_file(source / "optimizer.safetensors"), state)
        )
        scheduler.load_state_dict(state["scheduler"])
        restore_rng(
            state["python_rng"], source / f"rng-{self.accelerator.process_index}.safetensors"
        )
        return Progress(state["epoch"], state["history"], state["best_epoch"], state["best_uar"])

    def best(self, progress: Progress) -> Path:
        """The checkpoint folder of the best dev epoch."""
        return self.root / f"epoch-{progress.best_epoch:03d}"

    def remove(self) -> None:
        """Drop the checkpoints and pointers once the fold's results are written."""
        shutil.rmtree(self.root)
        for name in ("last.json", "best.json"):
            (self.fold_dir / name).unlink()


def has_checkpoint(fold_dir: Path) -> bool:
    """Whether a fold has completed at least one epoch (and can be resumed)."""
    return (fold_dir / "last.json").is_file()
