"""Shared test settings.

Tests use tiny models whose matrix products are far too small to gain from several threads; with
other processes on the machine, thread spinning made them ten times slower. One thread keeps the
suite fast and its timing steady.
"""

from __future__ import annotations

import torch

torch.set_num_threads(1)
