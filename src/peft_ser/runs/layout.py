"""A run folder's layout, owned in one place: `RunDir` (the run) and `FoldDir` (one fold).

A run folder is the whole story of a run and the only state ``--resume`` needs::

    config.yaml                  the resolved configuration (labels, task and attributes from
                                 the corpus filled in)
    fold-<name>/checkpoints/     epoch-NNN/: trainable weights + config (model.save), optimiser,
                                 scheduler state; last.json / best.json point into it
    fold-<name>/model/           the tested epoch's model (`optim.select`), kept after the fold
    fold-<name>/results.json     written last: its presence marks the fold complete
    fold-<name>/*.csv, *.png     history, test predictions, confusion matrix, learning curves
    .lock                        held by the training that writes here (its process and host)
    tensorboard/<fold>/          TensorBoard scalars per epoch
    train.log                    the run's log records
    bad_audio.csv                clips that could not be used (and were skipped), with reasons
    results.json/.csv, confusion.png, summary.txt   over all folds; results.json is written
                                 last: its presence marks the run complete
    evaluation/                  `peft-ser evaluate`'s output by default

Every reader and writer of a run folder (training, evaluation, cross-corpus, sweeps, the demo)
goes through these classes, so the names live here only. The layout is the one runs have
always had: folders written by earlier versions read unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from peft_ser.config import RunConfig, load_run_config, read_config_file
from peft_ser.models.ser_model import WEIGHTS_FILE
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import write_atomic

RUN_CONFIG = "config.yaml"
RESULTS = "results.json"
"""The results of a fold (in its folder) and of the run (over all folds); each is written
last, so its presence marks the fold or the run complete."""
MODEL = "model"
FOLD_PREFIX = "fold-"
EVALUATION = "evaluation"
"""`peft-ser evaluate`'s default output folder, inside the folder it scores."""
PREDICTIONS = "predictions.csv"
CONFUSION = "confusion.png"
ATTRIBUTES_PLOT = "attributes.png"
"""The files a scored split leaves in its folder (a fold's, or an evaluation's per fold)."""


def safe_name(name: str) -> str:
    """``name`` with every character a folder name should not hold replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def fold_folder(parent: Path, fold_name: str) -> Path:
    """Where the files of fold ``fold_name`` go below ``parent`` (a run, an evaluation)."""
    return parent / f"{FOLD_PREFIX}{safe_name(fold_name)}"


def read_json(path: Path) -> Any:
    """A results file's document; an unreadable or damaged one is a one-line `UserError`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such results file") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise UserError(f"{path}: not a readable results file ({error})") from None


@dataclass(frozen=True)
class FoldDir:
    """One fold's folder in a run: its checkpoints while it trains, then its model and results."""

    path: Path

    @property
    def model(self) -> Path:
        """The tested epoch's saved model (`SERModel.save` output)."""
        return self.path / MODEL

    @property
    def results(self) -> Path:
        return self.path / RESULTS

    @property
    def history(self) -> Path:
        return self.path / "history.csv"

    @property
    def learning_curves(self) -> Path:
        return self.path / "learning_curves.png"

    @property
    def confusion(self) -> Path:
        return self.path / CONFUSION

    @property
    def tensorboard(self) -> Path:
        """TensorBoard's folder for this fold: ``tensorboard/<fold folder>`` beside the fold."""
        return self.path.parent / "tensorboard" / self.path.name

    @property
    def complete(self) -> bool:
        """Whether the fold is done: its results are written (last, after its model)."""
        return self.results.is_file()

    @property
    def has_model(self) -> bool:
        return (self.model / WEIGHTS_FILE).is_file()

    def read_results(self) -> dict[str, Any]:
        return dict(read_json(self.results))


@dataclass(frozen=True)
class RunDir:
    """A run folder: its config, its folds, its logs and its results (see the module's
    docstring for the layout)."""

    path: Path

    @property
    def config_file(self) -> Path:
        return self.path / RUN_CONFIG

    @property
    def is_run(self) -> bool:
        """Whether the folder holds a run (its config is written when a run starts)."""
        return self.config_file.is_file()

    def read_config(self) -> RunConfig:
        """The run's resolved configuration; a missing, malformed or invalid file is one
        `ConfigError` line naming the file (and the line or key)."""
        return load_run_config(self.config_file)

    def read_config_document(self) -> dict[str, Any]:
        """The run's config as written (a mapping), for comparing it key by key."""
        return read_config_file(self.config_file)

    def write_config(self, config: RunConfig) -> None:
        document = config.model_dump(mode="json")
        write_atomic(self.config_file, yaml.safe_dump(document, sort_keys=False))

    def fold(self, name: str) -> FoldDir:
        return FoldDir(fold_folder(self.path, name))

    def fold_dirs(self) -> list[FoldDir]:
        """Every fold folder present, by folder name."""
        return [FoldDir(path) for path in sorted(self.path.glob(f"{FOLD_PREFIX}*"))]

    @property
    def results(self) -> Path:
        """The results over all folds (JSON); its presence marks the run complete."""
        return self.path / RESULTS

    @property
    def results_table(self) -> Path:
        return self.path / "results.csv"

    @property
    def summary(self) -> Path:
        return self.path / "summary.txt"

    @property
    def confusion(self) -> Path:
        """The test confusion pooled over every fold."""
        return self.path / CONFUSION

    @property
    def bad_audio(self) -> Path:
        """The clips that could not be used, with reasons (`BadAudioLog`)."""
        return self.path / "bad_audio.csv"

    @property
    def train_log(self) -> Path:
        return self.path / "train.log"

    @property
    def evaluation(self) -> Path:
        """Where `peft-ser evaluate` writes by default."""
        return self.path / EVALUATION

    @property
    def complete(self) -> bool:
        return self.results.is_file()

    def fold_results(self) -> list[dict[str, Any]]:
        """The results of the finished folds: the run's list once it is complete, else each
        complete fold's own file (by folder name)."""
        if self.complete:
            document = read_json(self.results)
            if not isinstance(document, dict) or not isinstance(document.get("folds"), list):
                raise UserError(f"{self.results}: not a run's results (no list of folds)")
            return list(document["folds"])
        return [fold.read_results() for fold in self.fold_dirs() if fold.complete]

    def saved_models(self) -> list[Path]:
        """The model folders of the folds that saved one, by fold folder name."""
        return [fold.model for fold in self.fold_dirs() if fold.has_model]
