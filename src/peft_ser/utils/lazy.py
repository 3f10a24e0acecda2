"""Public names of a package imported on first use (PEP 562 module ``__getattr__``).

``import peft_ser`` and ``import peft_ser.serving`` stay fast this way: torch, transformers and
the web stack load only when a model, a server or a prediction is asked for, so the command
line's ``--help`` starts at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_attributes(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: ``name`` is imported from the submodule
    ``modules[name]`` on first use and kept in the package, so later uses cost nothing."""

    def __getattr__(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f".{modules[name]}", package), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
