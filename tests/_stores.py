"""What the feature-store tests of frozen backbones and of layers below tuned ones share."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from peft_ser.config import RunConfig
from peft_ser.data.feature_store import FeatureStore
from peft_ser.training import train


def train_refused_by_the_store(
    config: RunConfig,
    store: Path,
    code: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> dict[str, Any]:
    """Train with every write to the persistent store refused with ``code`` (a full disk, a
    read-only one); check that the run said so once, naming the store; return fold 1's result."""

    def refuse(self: FeatureStore, path: Path, states: torch.Tensor) -> None:
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(FeatureStore, "save", refuse)
    with caplog.at_level(logging.WARNING, logger="peft_ser"):
        result = train(config)
    warned = [r.getMessage() for r in caplog.records if "without the persistent" in r.getMessage()]
    assert len(warned) == 1 and str(store) in warned[0]
    return result.folds[0]
