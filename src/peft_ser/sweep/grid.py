"""Grid files: a base run config, axes of values over its keys, and the cells they expand to.

A grid file reads::

    base: ../iemocap-whisper-base-lora16.yaml   # a run config file (relative to this file),
                                                # or a run config written inline as a mapping
    overrides: {optim.epochs: 10}               # dotted keys set in every cell
    axes:                                       # dotted config keys -> lists of values
      model.backbone: [whisper-tiny, wavlm-base-plus]
      model.method: [frozen, lora]
    exclude:                                    # partial assignments of cells to leave out
      - {model.backbone: wavlm-base-plus, model.method: frozen}
    output_dir: runs/paper/iemocap              # one run directory per cell below it
    executor: {name: local, workers: 2}         # see peft_ser.sweep.executors
    report: {rows: model.method, columns: model.backbone}
    paper: {source: ..., uar: {lora: {whisper-tiny: 64.1}}}   # expected numbers, in percent

The cells are the product of the axes, in the order the file lists them, minus the excluded
ones. A cell is an ordinary run directory named after its assignment
(``backbone=whisper-tiny,method=lora``), so a cell is resumed, evaluated and read exactly as a
run started by ``peft-ser train``. Every cell's config is validated when the grid is loaded, so
a bad value fails before the first cell trains.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from peft_ser.config import (
    RunConfig,
    StrictModel,
    format_validation_error,
    read_config_file,
    set_dotted,
)
from peft_ser.runs.layout import RunDir
from peft_ser.utils.errors import UserError, suggest


class GridError(UserError, ValueError):
    """A grid file that cannot be expanded; the message names the file and the key."""


class LocalExecutorConfig(StrictModel):
    """Cells on this machine: one after another, or ``workers`` processes side by side."""

    name: Literal["local"] = "local"
    workers: int = Field(1, ge=1, description="cells trained at once (each in its own process)")
    devices: list[str] | None = Field(
        None,
        description="GPU ids shared out among the workers (worker i gets every workers-th "
        "one, as CUDA_VISIBLE_DEVICES); default: all GPUs torch sees, none on CPU",
    )


class SlurmExecutorConfig(StrictModel):
    """Cells as one SLURM job array, submitted through submitit."""

    name: Literal["slurm"]
    partition: str | None = None
    time_min: int = Field(24 * 60, ge=1, description="time limit of each cell's job (minutes)")
    gpus_per_node: int = Field(1, ge=0)
    cpus_per_task: int = Field(8, ge=1)
    mem_gb: float | None = Field(None, gt=0)
    max_parallel: int | None = Field(None, ge=1, description="array jobs running at once")
    account: str | None = None
    qos: str | None = None
    additional: dict[str, Any] = Field(
        default_factory=dict, description="more sbatch options, e.g. {constraint: a100}"
    )
    folder: Path | None = Field(None, description="submitit's logs; default: output_dir/.submitit")
    wait: bool = Field(False, description="wait for the array to finish before returning")
    cluster: Literal["slurm", "local"] = Field(
        "slurm",
        description="local: submitit's local executor runs the same array here (a rehearsal)",
    )


EXECUTORS = ("local", "slurm")

ExecutorConfig = Annotated[LocalExecutorConfig | SlurmExecutorConfig, Field(discriminator="name")]


class ReportConfig(StrictModel):
    """Which two axes span the report's table (the other axes are pooled, like folds)."""

    rows: str | None = Field(None, description="default: model.method if it is an axis")
    columns: str | None = Field(None, description="default: model.backbone if it is an axis")


class PaperNumbers(StrictModel):
    """Published test UAR (percent) by row value and column value, with where it comes from."""

    source: str
    uar: dict[str, dict[str, float]]


class GridFile(StrictModel):
    """The grid file as written."""

    base: Path | dict[str, Any]
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="dotted keys set in every cell (not in its name)"
    )
    axes: dict[str, list[Any]] = Field(min_length=1)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    output_dir: Path
    executor: ExecutorConfig = Field(default_factory=LocalExecutorConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    paper: PaperNumbers | None = None

    @field_validator("executor", mode="before")
    @classmethod
    def _executor_by_name(cls, value: Any) -> Any:
        """``local`` when no name is given; an unknown name is refused with the known ones."""
        if not isinstance(value, dict):
            return value
        name = value.get("name", "local")
        if name not in EXECUTORS:
            raise ValueError(
                f"unknown executor {name!r}{suggest(str(name), EXECUTORS)}; "
                f"known: {', '.join(EXECUTORS)}"
            )
        return {**value, "name": name}

    @field_validator("overrides")
    @classmethod
    def _known_override_keys(cls, overrides: dict[str, Any]) -> dict[str, Any]:
        for key in overrides:
            problem = "set by the grid" if key == "output_dir" else unknown_config_key(key)
            if problem:
                raise ValueError(f"{key}: {problem}")
        return overrides

    @field_validator("axes")
    @classmethod
    def _known_keys_with_values(cls, axes: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in axes.items():
            problem = unknown_config_key(key)
            if problem:
                raise ValueError(f"{key}: {problem}")
            if key == "output_dir":
                raise ValueError("output_dir: set by the grid (one folder per cell), not an axis")
            if not values:
                raise ValueError(f"{key}: an axis needs at least one value")
            if len({cell_label(value) for value in values}) < len(values):
                raise ValueError(f"{key}: values repeat (or name the same folder): {values}")
        return axes

    @model_validator(mode="after")
    def _exclusions_and_report_name_axes(self) -> GridFile:
        for index, partial in enumerate(self.exclude):
            for key, value in partial.items():
                if key not in self.axes:
                    raise ValueError(
                        f"exclude[{index}]: {key} is not an axis{suggest(key, self.axes)}"
                    )
                if value not in self.axes[key]:
                    raise ValueError(
                        f"exclude[{index}]: {value!r} is not a value of axis {key} "
                        f"({self.axes[key]})"
                    )
        if self.paper is not None:
            labels = {cell_label(value) for values in self.axes.values() for value in values}
            named = set(self.paper.uar) | {c for row in self.paper.uar.values() for c in row}
            unknown = sorted(named - labels)
            if unknown:
                raise ValueError(f"paper.uar: {', '.join(unknown)}: not values of any axis")
        for role in ("rows", "columns"):
            key = getattr(self.report, role)
            if key is not None and key not in self.axes:
                raise ValueError(f"report.{role}: {key} is not an axis{suggest(key, self.axes)}")
        return self


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its axis values, its run config and its run directory."""

    name: str
    assignment: dict[str, Any]
    config: RunConfig

    @property
    def run_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def run(self) -> RunDir:
        return RunDir(self.run_dir)

    @property
    def complete(self) -> bool:
        """Whether the cell's run is complete (every selected fold done, results written)."""
        return self.run.complete


@dataclass(frozen=True)
class Grid:
    """A loaded grid: its settings and its cells (excluded ones already left out)."""

    path: Path | None
    settings: GridFile
    cells: list[Cell]

    @property
    def output_dir(self) -> Path:
        return self.settings.output_dir


def load_grid(path: str | Path) -> Grid:
    """Read, validate and expand the grid file at ``path``; every problem names the file."""
    path = Path(path)
    document = read_config_file(path)
    return grid_from_document(document, path)


def grid_from_document(document: dict[str, Any], path: Path | None = None) -> Grid:
    """Validate a grid written as a mapping; ``path`` (for messages, and to find a base file
    given by a relative path) is the file it came from, if any."""
    where = f"{path}: " if path is not None else ""
    try:
        settings = GridFile.model_validate(document)
    except ValidationError as error:
        raise GridError(where + _grid_problem(error)) from None
    base = _base_document(settings.base, path, where)
    cells = [
        _cell(base, settings, assignment, where)
        for assignment in expand(settings.axes, settings.exclude)
    ]
    return Grid(path, settings, cells)


def expand(axes: dict[str, list[Any]], exclude: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The product of the axes (first axis slowest), without assignments matching an exclusion."""
    keys = list(axes)
    assignments = [
        dict(zip(keys, values, strict=True)) for values in itertools.product(*axes.values())
    ]
    return [
        assignment
        for assignment in assignments
        if not any(all(assignment[k] == v for k, v in partial.items()) for partial in exclude)
    ]


def cell_name(assignment: dict[str, Any]) -> str:
    """``backbone=whisper-tiny,method=lora``: each axis by its last key part (the full dotted
    key where two axes share a last part) and its value, safe as a folder name."""
    last = [key.rsplit(".", 1)[-1] for key in assignment]
    names = [
        short if last.count(short) == 1 else key
        for key, short in zip(assignment, last, strict=True)
    ]
    return ",".join(
        f"{name}={cell_label(value)}"
        for name, value in zip(names, assignment.values(), strict=True)
    )


def unknown_config_key(dotted: str) -> str | None:
    """Why ``dotted`` is not one key of a run config (with the keys allowed there), or None."""
    model: type[BaseModel] = RunConfig
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:depth]) or "a run config"
            return f"unknown config key{suggest(part, fields)}; {where} has: {', '.join(fields)}"
        section = _section(fields[part].annotation)
        if depth == len(parts) - 1:
            return "is a whole section; an axis sets one key of it" if section else None
        if section is None:
            return f"{'.'.join(parts[: depth + 1])} is a value, not a section"
        model = section
    return None


def _section(annotation: Any) -> type[BaseModel] | None:
    is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation if is_section else None


def cell_label(value: Any) -> str:
    """A value as it appears in a folder name: lists joined by ``-``, unsafe characters ``_``."""
    if isinstance(value, list | tuple):
        return "-".join(cell_label(item) for item in value)
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text)


def _base_document(
    base: Path | dict[str, Any], grid_path: Path | None, where: str
) -> dict[str, Any]:
    if isinstance(base, dict):
        return base
    resolved = base if base.is_absolute() or grid_path is None else grid_path.parent / base
    if not resolved.is_file():
        raise GridError(f"{where}base: no run config file at {resolved}")
    return read_config_file(resolved)


def _cell(base: dict[str, Any], settings: GridFile, assignment: dict[str, Any], where: str) -> Cell:
    """The cell's run config: the base, the grid's overrides, the cell's axis values and its
    own folder under output_dir, validated like any run config (naming what is wrong)."""
    name = cell_name(assignment)
    axes = settings.axes
    document = copy.deepcopy(base)
    placed = {**settings.overrides, **assignment, "output_dir": str(settings.output_dir / name)}
    for key, value in placed.items():
        set_dotted(document, key, value)
    try:
        config = RunConfig.model_validate(document)
    except ValidationError as error:

        def source(location: str) -> str:
            from_axis = any(location == k or location.startswith(f"{k}.") for k in axes)
            from_override = any(
                location == k or location.startswith(f"{k}.") for k in settings.overrides
            )
            return "axes: " if from_axis else "overrides: " if from_override else "base: "

        problem = format_validation_error(error, RunConfig, source)
        raise GridError(f"{where}cell {name}: {problem}") from None
    return Cell(name, assignment, config)


def _grid_problem(error: ValidationError) -> str:
    """The grid file's problems, one line each, in the words of the run config's messages."""
    lines = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"] if not _is_union_tag(part))
        if problem["type"] == "extra_forbidden":
            lines.append(f"{location}: unknown key")
        elif problem["type"] == "missing":
            lines.append(f"{location}: required key is missing")
        elif problem["type"] == "value_error":
            message = problem["msg"].removeprefix("Value error, ")
            lines.append(f"{location}: {message}" if location else message)
        else:
            lines.append(f"{location}: {problem['msg']} (got {problem.get('input')!r})")
    if len(lines) == 1:
        return f"invalid grid: {lines[0]}"
    return "invalid grid\n  " + "\n  ".join(lines)


def _is_union_tag(part: int | str) -> bool:
    """pydantic's location entries naming a union's branch (``local``, ``dict[str,any]``)."""
    return isinstance(part, str) and (part in ("local", "slurm") or "[" in part)
