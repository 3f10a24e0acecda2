"""Training across folds, on one device or many processes (Accelerate).

`train` runs a configuration on each selected fold (see `run`); the other modules are its
parts: `loop` (one fold), `batches` (waveforms or cached states), `checkpoint` and `guards`
(non-finite steps, collapsed runs).
"""

from peft_ser.training.run import RunResult, train

__all__ = ["RunResult", "train"]
