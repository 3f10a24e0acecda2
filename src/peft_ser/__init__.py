"""peft-ser: parameter-efficient fine-tuning of speech encoders for emotion recognition.

The public API is imported on first use, so ``import peft_ser`` (and the command line's
``--help``) stays fast: torch and transformers load only when a model is needed.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import TYPE_CHECKING

from peft_ser.utils.lazy import lazy_attributes

__version__ = version("peft-ser")

EMOTIONS: dict[int, str] = {0: "Neutral", 1: "Angry", 2: "Sad", 3: "Happy"}

__getattr__ = lazy_attributes(
    __name__,
    {
        "load_model": "inference.loading",
        "predict": "inference.predict",
        "Prediction": "inference.predict",
        "SERModel": "models.ser_model",
    },
)

__all__ = ["EMOTIONS", "Prediction", "SERModel", "__version__", "load_model", "predict"]

if TYPE_CHECKING:
    from peft_ser.inference.loading import load_model
    from peft_ser.inference.predict import Prediction, predict
    from peft_ser.models.ser_model import SERModel
