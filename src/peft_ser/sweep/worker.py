"""One cell in its own process: ``python -m peft_ser.sweep.worker < config.json``.

The local executor starts one such process per cell when it trains several at once, each with
its own ``CUDA_VISIBLE_DEVICES``; the run config comes on standard input as JSON. A user error
(a corpus that is not prepared, a run directory that cannot be resumed) ends it with one
``error:`` line and status 2, as the command line does.
"""

from __future__ import annotations

import logging
import sys

from peft_ser.config import RunConfig
from peft_ser.sweep.executors import train_cell
from peft_ser.utils.errors import UserError


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    config = RunConfig.model_validate_json(sys.stdin.read())
    try:
        train_cell(config)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
