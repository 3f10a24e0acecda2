"""Progress bars on a terminal only.

A bar redraws itself with carriage returns; written to a file or a pipe (``make demo > log``,
CI, nohup) that turns into hundreds of frames on one line. Where the output is not a terminal
no bar is drawn, and long work reports itself through plain log lines instead (one per epoch in
training, a count at the end of prediction and preparation).
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm


def on_terminal() -> bool:
    """Whether standard error (where bars are drawn) is an interactive terminal."""
    return sys.stderr.isatty()


def progress_bar(enabled: bool = True, **options: Any) -> tqdm:
    """A tqdm bar (``options`` as for tqdm) that is silent unless enabled and on a terminal."""
    return tqdm(disable=not (enabled and on_terminal()), dynamic_ncols=True, **options)
