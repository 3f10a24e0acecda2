"""peft-ser: parameter-efficient fine-tuning of speech encoders for emotion recognition.

The public API is imported on first use, so ``import peft_ser`` (and the command line's
``--help``) stays fast: torch and transformers load only when a model is needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_attributes

__version__ = "0.1.0"

EMOTIONS: dict[int, str] = {0: "Neutral", 1: "Angry", 2: "Sad", 3: "Happy"}

__getattr__ = lazy_attributes(
    __name__,
    {
        "load_model": "loading",
        "predict": "inference",
        "Prediction": "inference",
        "SERModel": "model",
    },
)

__all__ = ["EMOTIONS", "Prediction", "SERModel", "__version__", "load_model", "predict"]

if TYPE_CHECKING:
    from .inference import Prediction, predict
    from .loading import load_model
    from .model import SERModel
