"""PEFT methods by name. A method is a function that modifies a frozen backbone in place.

Before a method runs, every backbone weight is frozen; the method adds its own parameters (which
are trainable) or unfreezes what it trains. Adding a method means one module with a function
decorated by ``@register("name")`` and one import line in ``tuning/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..backbones import Backbone
from ..config import ModelConfig

Method = Callable[[Backbone, ModelConfig], None]

METHODS: dict[str, Method] = {}


def register(*names: str) -> Callable[[Method], Method]:
    def decorate(method: Method) -> Method:
        for name in names:
            METHODS[name] = method
        return method

    return decorate


def apply_method(backbone: Backbone, config: ModelConfig) -> None:
    """Freeze the backbone, then let the configured method add or unfreeze what it trains."""
    if config.method not in METHODS:
        raise ValueError(
            f"unknown PEFT method {config.method!r}; choose one of {', '.join(sorted(METHODS))}"
        )
    backbone.requires_grad_(False)
    METHODS[config.method](backbone, config)
