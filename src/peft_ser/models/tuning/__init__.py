"""PEFT methods, one module each, behind a name registry."""

from peft_ser.models.tuning import adapter, combined, frozen, lora, prompt  # noqa: F401  (register the methods)
from peft_ser.models.tuning.registry import METHODS, apply_method, register

__all__ = ["METHODS", "apply_method", "register"]
