"""Shared by the serving tests: two saved tiny models that disagree, clips, answers compared
with `predict`'s, a live server.

The models are tiny-whisper + LoRA with different seeds. Their LoRA updates are drawn at random
(a freshly built LoRA is zero) and their classifiers sharpened, so both the adapter and the
head move the answer and the two models give clearly different probabilities.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import uvicorn
from _models import build_tiny_model
from _tones import RATE, tone
from fastapi.testclient import TestClient

from peft_ser.inference.predict import Prediction
from peft_ser.models.ser_model import SERModel
from peft_ser.serving import ModelPool, ModelSpec


def adapter_model(seed: int) -> SERModel:
    return build_tiny_model(seed=seed, lora_rank=4, lora_b=0.5, sharpen=30)


def save_models(root: Path, seeds: tuple[int, ...] = (1, 2)) -> list[Path]:
    return [adapter_model(seed).save(root / f"m{seed}") for seed in seeds]


def voice(seconds: float, pitch: float = 220.0, rate: int = RATE) -> np.ndarray:
    """A pitched tone with a syllable-like envelope; pitch changes move the tiny models' answers."""
    wave = tone(seconds, pitch, rate=rate, syllables=4, dtype=np.float64)
    return (wave + tone(seconds, 3 * pitch, rate=rate, amplitude=0.1, dtype=np.float64)).astype(
        np.float32
    )


def write_clip(path: Path, seconds: float, pitch: float = 220.0) -> Path:
    sf.write(path, voice(seconds, pitch), RATE)
    return path


def assert_same(answer: dict, reference: Prediction) -> None:
    """An API answer equals `predict`'s, window by window (up to float32 rounding)."""
    assert answer["label"] == reference.label
    assert answer["duration"] == pytest.approx(reference.duration)
    assert list(answer["probabilities"]) == list(reference.probabilities)
    np.testing.assert_allclose(
        list(answer["probabilities"].values()), list(reference.probabilities.values()), atol=1e-5
    )
    assert_same_windows(answer["windows"], reference)


def assert_same_windows(windows: list[dict], reference: Prediction) -> None:
    """Answered windows (of an upload or a stream) equal `predict`'s, in order, to 1e-5."""
    assert len(windows) == len(reference.windows)
    for window, ours in zip(windows, reference.windows, strict=True):
        assert (window["start"], window["end"], window["label"]) == (
            ours.start,
            ours.end,
            ours.label,
        )
        np.testing.assert_allclose(
            list(window["probabilities"].values()), list(ours.probabilities.values()), atol=1e-5
        )


def two_model_pool(root: Path) -> ModelPool:
    """Models ``a`` and ``b``: the two saved tiny models of `save_models`, which disagree."""
    first, second = save_models(root)
    return ModelPool.load([ModelSpec("a", str(first)), ModelSpec("b", str(second))])


def local_client(app: object) -> TestClient:
    """A test client whose requests name ``localhost`` as their Host, as a local browser does
    (the test client's own ``testserver`` is not an allowed host)."""
    return TestClient(app, base_url="http://localhost")  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running(app: object) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
