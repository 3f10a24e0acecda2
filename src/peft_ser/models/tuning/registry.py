"""PEFT methods by name. A method is a function that modifies a frozen backbone in place.

Before a method runs, every backbone weight is frozen; the method adds its own parameters (which
are trainable) or unfreezes what it trains. Adding a method means one module with a function
decorated by ``@register("name")`` and one import line in ``tuning/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from peft_ser.models.backbones import Backbone
from peft_ser.utils.errors import UserError, match_name, suggest

if TYPE_CHECKING:
    from peft_ser.models.config import ModelConfig

Method = Callable[[Backbone, "ModelConfig"], None]

METHODS: dict[str, Method] = {}


class MethodError(UserError, ValueError):
    """A PEFT method name that is not registered; the message lists the registered ones."""


def register(*names: str) -> Callable[[Method], Method]:
    def decorate(method: Method) -> Method:
        for name in names:
            METHODS[name] = method
        return method

    return decorate


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
    """Freeze the backbone, then let the configured method add or unfreeze what it trains."""
    method = METHODS[resolve_method(config.method)]
    backbone.requires_grad_(False)
    method(backbone, config)
