"""peft-ser: parameter-efficient fine-tuning of speech encoders for emotion recognition.

The public API, from a model's settings to its predictions: `ModelConfig` and `build_model`
(a model from its settings), `RunConfig` and `load_run_config` (a run's settings, from YAML and
overrides), `train` (a run config on its folds), `evaluate` (a run or saved
model on a prepared corpus), `load_model` (a saved model folder or a zoo name, the one loader),
`predict` and `iter_predictions` (emotions of recordings), `Prediction`, `SERModel` and
`EMOTIONS`. Each is imported on first use, so ``import peft_ser`` (and the command line's
``--help``) stays fast: torch and transformers load only when a model is needed, and not at all
for an exported model run on onnxruntime.
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
        "ModelConfig": "models.config",
        "build_model": "models.ser_model",
        "SERModel": "models.ser_model",
        "RunConfig": "config.schema",
        "load_run_config": "config.files",
        "train": "training.run",
        "evaluate": "evaluation.evaluate",
        "load_model": "inference.loading",
        "predict": "inference.predict",
        "iter_predictions": "inference.predict",
        "Prediction": "inference.predict",
    },
)

__all__ = [
    "EMOTIONS",
    "ModelConfig",
    "Prediction",
    "RunConfig",
    "SERModel",
    "__version__",
    "build_model",
    "evaluate",
    "iter_predictions",
    "load_model",
    "load_run_config",
    "predict",
    "train",
]

if TYPE_CHECKING:
    from peft_ser.config.files import load_run_config
    from peft_ser.config.schema import RunConfig
    from peft_ser.evaluation.evaluate import evaluate
    from peft_ser.inference.loading import load_model
    from peft_ser.inference.predict import Prediction, iter_predictions, predict
    from peft_ser.models.config import ModelConfig
    from peft_ser.models.ser_model import SERModel, build_model
    from peft_ser.training.run import train
