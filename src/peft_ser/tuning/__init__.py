"""PEFT methods, one module each, behind a name registry."""

from . import adapter, combined, frozen, lora, prompt  # noqa: F401  (register the methods)
from .registry import METHODS, apply_method, register

__all__ = ["METHODS", "apply_method", "register"]
