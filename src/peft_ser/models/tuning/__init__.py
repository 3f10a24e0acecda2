"""PEFT methods, one module each, behind a name registry (`registry`): each method's options
model and function (`spec.MethodSpec`). Importing this package loads neither torch nor peft."""

from peft_ser.models.tuning.registry import (
    METHODS,
    SPECS,
    MethodError,
    apply_method,
    resolve_method,
)
from peft_ser.models.tuning.spec import MethodSpec, NoOptions

__all__ = [
    "METHODS",
    "SPECS",
    "MethodError",
    "MethodSpec",
    "NoOptions",
    "apply_method",
    "resolve_method",
]
