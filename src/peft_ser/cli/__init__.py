"""The `peft-ser` command line: a thin shell over the public Python functions.

`app` holds the commands; each module below registers its own: `corpora` (prepare,
preprocess), `training` (train, evaluate, params, demo), `cross_corpus`, `predict`, `export`,
`serve`, `sweep`, `zoo`, `cache`.
"""

from peft_ser.cli import cache, corpora, cross_corpus, export, predict, serve, sweep, training, zoo
from peft_ser.cli.app import DEBUG_ENV, app

__all__ = [
    "DEBUG_ENV",
    "app",
    "cache",
    "corpora",
    "cross_corpus",
    "export",
    "predict",
    "serve",
    "sweep",
    "training",
    "zoo",
]
