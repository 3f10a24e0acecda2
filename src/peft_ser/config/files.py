"""Configuration files and options: YAML read with one-line errors naming the file and the line,
dotted command-line overrides, documents nested deeper than any config needs (`MAX_DEPTH`) or
expanding past `MAX_VALUES` refused, and validation errors formatted one line per key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeGuard

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from peft_ser.config.schema import RunConfig
from peft_ser.utils.settings import (
    TOO_DEEP,
    ConfigError,
    document_problem,
    format_validation_error,
)

CLI_ALIASES: dict[str, str] = {
    "backbone": "model.backbone",
    "method": "model.method",
    "rank": "model.lora_rank",
    "peft_config": "model.peft_config",
    "corpus": "data.corpus",
    "folds": "data.folds",
    "batch_size": "data.batch_size",
    "num_workers": "data.num_workers",
    "epochs": "optim.epochs",
    "lr": "optim.lr",
    "output_dir": "output_dir",
    "seed": "seed",
}
"""Short command-line options and the config keys they set."""
_JSON: TypeAdapter[Any] = TypeAdapter(Any)
"""Writes a default as a run's config.yaml holds it (a path as a string, a tuple as a list)."""


def load_run_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Read a run config from YAML (optional) and apply dotted-key overrides on top.

    Overrides such as ``{"model.lora_rank": 8}`` win over the file. Every problem is reported
    in one `ConfigError` naming the key, the value and what is allowed, and where the value
    came from: the file (with its name) or an override (the command line's options).
    """
    document = read_config_file(Path(path)) if path is not None else {}
    overrides = overrides or {}
    for dotted, value in overrides.items():
        set_dotted(document, dotted, value)
    problem = document_problem(document)
    if problem is not None:
        raise ConfigError(f"{path or 'options'}: {problem}")
    try:
        return RunConfig.model_validate(document)
    except ValidationError as error:

        def source(location: str) -> str:
            from_option = any(
                location == key or location.startswith(f"{key}.") for key in overrides
            )
            if from_option:
                return "option "
            return "" if path is None else f"{path}: "

        raise ConfigError(format_validation_error(error, RunConfig, source)) from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path``; a missing, unreadable or malformed file is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the config file ({error})") from None
    try:
        loaded = yaml.safe_load(text)
    except RecursionError:
        raise ConfigError(f"{path}: {TOO_DEEP}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{where}: invalid YAML ({problem})") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a run config is a mapping of sections, got {loaded!r}")
    problem = document_problem(loaded)
    if problem is not None:
        raise ConfigError(f"{path}: {problem}")
    return loaded or {}


def set_dotted(document: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = document
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part} is not a section")
        node = child
    node[leaf] = value


def with_defaults(document: dict[str, Any], schema: type[BaseModel] = RunConfig) -> dict[str, Any]:
    """``document`` (a config as a run wrote it) with every key it lacks that has a default
    filled in with that default, section by section, as JSON values.

    A key added after an older run was written reads as its default, the value that keeps
    what the older code did, so comparing that run's config with the same settings today
    finds nothing changed (a ``--resume`` or a sweep's complete cell is not refused for it).
    """
    filled = dict(document)
    for name, field in schema.model_fields.items():
        section = field.annotation
        if name not in filled and not field.is_required():
            default = field.get_default(call_default_factory=True)
            filled[name] = _JSON.dump_python(default, mode="json")
        elif _is_section(section) and isinstance(filled.get(name), dict):
            filled[name] = with_defaults(filled[name], section)
    return filled


def _is_section(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
