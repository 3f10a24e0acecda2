"""peft-ser: parameter-efficient fine-tuning of speech encoders for emotion recognition.

The public API is imported on first use, so ``import peft_ser`` (and the command line's
``--help``) stays fast: torch and transformers load only when a model is needed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

EMOTIONS: dict[int, str] = {0: "Neutral", 1: "Angry", 2: "Sad", 3: "Happy"}

_LAZY = {
    "load_model": "loading",
    "predict": "inference",
    "Prediction": "inference",
    "SERModel": "model",
}

__all__ = ["EMOTIONS", "Prediction", "SERModel", "__version__", "load_model", "predict"]

if TYPE_CHECKING:
    from .inference import Prediction, predict
    from .loading import load_model
    from .model import SERModel


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value
