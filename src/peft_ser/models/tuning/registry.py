"""PEFT methods by name, each with the model of its options (`MethodSpec`).

Before a method runs, every backbone weight is frozen; the method adds its own parameters (which
are trainable) or unfreezes what it trains. Adding a method means one module, ``<method>.py``,
with its options model (a `StrictModel` whose fields all have defaults), its function and a
`MethodSpec` joining them, and one line in `SPECS` below. Nothing else changes: `ModelConfig`
takes its option keys from `option_fields` (two methods that share a key, as ``combined`` shares
LoRA's, share its field), so a config, a saved model and ``--set model.<key>`` reach them.

This module loads without torch or peft: the methods' modules import them in their functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic.fields import FieldInfo

from peft_ser.models.tuning import adapter, combined, frozen, lora, prompt
from peft_ser.models.tuning.spec import MethodSpec
from peft_ser.utils.errors import UserError, match_name, suggest
from peft_ser.utils.settings import ConfigError

if TYPE_CHECKING:
    from peft_ser.models.backbones import Backbone
    from peft_ser.models.config import ModelConfig

SPECS: tuple[MethodSpec[Any], ...] = (
    frozen.FROZEN,
    frozen.FULL,
    lora.LORA,
    lora.PEFT,
    adapter.PARALLEL,
    adapter.SEQUENTIAL,
    prompt.EMBEDDING_PROMPT,
    combined.COMBINED,
)
"""Every method, in the order `ModelConfig` lists their option keys."""

METHODS: dict[str, MethodSpec[Any]] = {name: spec for spec in SPECS for name in spec.names}
"""Every name a config may give, aliases included, to its method."""


class MethodError(UserError, ValueError):
    """A PEFT method name that is not registered; the message lists the registered ones."""


def option_fields() -> dict[str, FieldInfo]:
    """Every method's option keys with their fields, in `SPECS` order.

    Raises `TypeError` (a programming error) when two methods declare one key differently:
    a config's key has one meaning whatever the method.
    """
    fields: dict[str, FieldInfo] = {}
    for spec in SPECS:
        for key, field in spec.options.model_fields.items():
            known = fields.setdefault(key, field)
            if (known.annotation, known.default) != (field.annotation, field.default):
                raise TypeError(f"option {key!r} of method {spec.name!r} differs from another's")
    return fields


def methods_taking(key: str) -> list[str]:
    """The methods (by their stored names) whose options include ``key``."""
    return [spec.name for spec in SPECS if key in spec.options.model_fields]


def resolve_method(name: str) -> str:
    """The registered name ``name`` stands for (matched case-insensitively: ``LoRA``, ``Frozen``).

    Raises `MethodError` with the closest registered name and the full list otherwise.
    """
    registered = match_name(name, METHODS)
    if registered is None:
        raise MethodError(
            f"unknown PEFT method {name!r}{suggest(name, METHODS)}; "
            f"known: {', '.join(sorted(METHODS))}"
        )
    return registered


def apply_method(backbone: Backbone, config: ModelConfig) -> None:
    """Freeze the backbone, then let the configured method add or unfreeze what it trains: in
    the top ``config.tune_layers`` layers when that is set (`Backbone.adapt_top`), where
    nothing outside them may train (a ``peft`` tuner that targets module names peft does not
    filter by layer is refused)."""
    spec = METHODS[resolve_method(config.method)]
    options = config.method_options
    backbone.requires_grad_(False)
    if config.tune_layers is not None:
        backbone.adapt_top(config.tune_layers)
    spec.apply(backbone, options)
    stray = backbone.trained_outside_tuned_layers() if config.tune_layers is not None else []
    if stray:
        raise ConfigError(
            f"model.tune_layers {config.tune_layers}: method {spec.name!r} also trains "
            f"{stray[0]}, outside the top {config.tune_layers} layers; give the tuner module "
            "names that peft filters by layer"
        )
