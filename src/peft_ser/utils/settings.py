"""Validated settings: the pydantic base every settings model shares, the bounds on a settings
document, and validation errors as one line per key.

Each layer declares its own settings (`peft_ser.models.config.ModelConfig`, the data's
`AugmentConfig`, each PEFT method's options); the run configuration (`peft_ser.config`) gathers
them. They all refuse the same things in the same words through this module.
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, ValidationError

from peft_ser.utils.errors import UserError

MAX_SIZE = 8192
"""Largest ``lora_rank``, ``adapter_dim``, ``head_dim``, ``prompt_length`` and ``lora_alpha``.
The widest layer of any registry backbone is 5120 (whisper-large-v3's feed-forward); a rank,
bottleneck or head wider than that adds weights but no capacity, and 10^9 asks for terabytes."""
MAX_DEPTH = 32
"""Deepest nesting of a config document: a run config is 3 levels deep, a ``peft_config`` a few
more. A deeper document is a mistake or an attack (200,000 levels overflow Python's stack)."""
MAX_VALUES = 100_000
"""Most values a config document may expand to: YAML aliases can make a short file expand
without end ("billion laughs"); real configs hold a few hundred."""


class ConfigError(UserError, ValueError):
    """A configuration that failed validation; the message names each bad key."""


class StrictModel(BaseModel):
    """Base for all configs: unknown keys are rejected, values are validated on assignment,
    and no float is NaN or infinite (no setting means "infinite"; None means "none")."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


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
            # names the value, and its key where a check of the whole config raised it
            where = f"{prefix}{location}: " if location else prefix
            lines.append(f"{where}{problem['ctx']['error']}")
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
