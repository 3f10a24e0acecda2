"""Training and evaluation across folds, on one device or many processes (Accelerate).

`train` runs a configuration on each selected fold (see `run` for the run directory),
`evaluate` scores trained models; the other modules are their parts: `loop` (one fold),
`batches` (waveforms or cached states), `checkpoint`, `guards` (non-finite steps, collapsed
runs), `scoring`, `results` and `corpus` (which prepared corpus and folds).
"""

from peft_ser.training.corpus import fold_directory, resolve_corpus, select_folds
from peft_ser.training.evaluate import evaluate
from peft_ser.training.run import RunResult, train

__all__ = ["RunResult", "evaluate", "fold_directory", "resolve_corpus", "select_folds", "train"]
