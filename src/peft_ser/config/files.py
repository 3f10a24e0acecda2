"""Configuration files and options: YAML read with one-line errors naming the file and the line,
dotted command-line overrides, documents nested deeper than any config needs (`MAX_DEPTH`) or
expanding past `MAX_VALUES` refused, and validation errors formatted one line per key.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from peft_ser.config.schema import MAX_DEPTH, MAX_VALUES, ConfigError, RunConfig
from peft_ser.errors import UserError

CLI_ALIASES: dict[str, str] = {
    "backbone": "model.backbone",
    "method": "model.method",
    "rank": "model.lora_rank",
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


TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep; no config needs that many"


def document_problem(document: object) -> str | None:
    """Why a parsed config document is no config (nested deeper than `MAX_DEPTH`, or expanding
    to more than `MAX_VALUES` values), or None. Walks with its own stack and stops at the first
    excess, so neither a deep document nor an alias bomb (or an alias to itself) can exhaust
    Python's stack or run for long, and validation never meets them."""
    stack: list[tuple[object, int]] = [(document, 1)]
    count = 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return f"expands to more than {MAX_VALUES} values (YAML aliases?); no config needs that"
        if not isinstance(node, (dict, list, tuple)):
            continue
        if depth > MAX_DEPTH:
            return TOO_DEEP
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children)
    return None


def set_dotted(document: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = document
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part} is not a section")
        node = child
    node[leaf] = value


def format_validation_error(
    error: ValidationError,
    root: type[BaseModel],
    source: Callable[[str], str] = lambda location: "",
) -> str:
    """One line per problem: ``key: message (got value)``; unknown keys list the known ones.

    ``source(key)`` prefixes each line with where the key's value came from.
    """
    lines = []
    for problem in error.errors():
        location = ".".join(str(part) for part in problem["loc"])
        prefix = source(location)
        if problem["type"] == "extra_forbidden":
            allowed = ", ".join(_fields_at(root, problem["loc"][:-1]))
            lines.append(f"{prefix}{location}: unknown key; allowed keys: {allowed}")
        elif problem["type"] == "missing":
            lines.append(f"{prefix}{location}: required key is missing")
        elif isinstance(problem.get("ctx", {}).get("error"), UserError):
            lines.append(f"{prefix}{location}: {problem['ctx']['error']}")  # names the value
        else:
            lines.append(f"{prefix}{location}: {problem['msg']} (got {problem.get('input')!r})")
    if len(lines) == 1:
        return f"invalid configuration: {lines[0]}"
    return "invalid configuration\n  " + "\n  ".join(lines)


def _fields_at(root: type[BaseModel], location: tuple[int | str, ...]) -> list[str]:
    """The field names of the section at ``location`` (list indices are skipped)."""
    model: type[BaseModel] = root
    for part in location:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)
