"""Shared test settings and fixtures: the prepared tone corpus (`_tones`) and the seeded tiny
model (`_models`), built once per module or session.

Tests use tiny models whose matrix products are far too small to gain from several threads; with
other processes on the machine, thread spinning made them ten times slower. One thread keeps the
suite fast and its timing steady.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from _models import build_tiny_model
from _tones import make_corpus

from peft_ser.models.ser_model import SERModel

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated tone corpus of `_tones`, prepared, shared by a test module."""
    return make_corpus(tmp_path_factory.mktemp("tones"))


@pytest.fixture(autouse=True)
def _one_thread_after_each_test() -> Iterator[None]:
    """Every test starts at one torch thread: a library that sets OpenMP's count itself
    (ctranslate2 does when it loads a model) would otherwise change the float sums, and so the
    numbers, of every later test in the session."""
    yield
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _own_feature_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test its own persistent feature cache: none writes to ~/.cache, none sees another's."""
    monkeypatch.setenv("PEFT_SER_FEATURE_CACHE", str(tmp_path_factory.mktemp("features")))


@pytest.fixture(scope="module")
def tiny_model() -> SERModel:
    """The seeded tiny Whisper + LoRA model of `_models` (random weights, no download), in eval
    mode; each module gets its own, so one module's changes to it stay there."""
    return build_tiny_model()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded tiny Whisper + LoRA model, saved once for the session: read it, or copy it
    before changing anything."""
    return build_tiny_model().save(tmp_path_factory.mktemp("tiny-model") / "model")
