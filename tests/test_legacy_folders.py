"""Files written by an earlier peft-ser keep working: a saved model, a run folder, its config.

``tests/data/legacy/`` was written by the code of commit 3642d6e (before the package was
reorganised into layers): ``model/`` is a seeded tiny Whisper + LoRA model saved with
`SERModel.save`, with its logits on a fixed tone in ``model_logits.json``; ``run/`` is a two-epoch
run of a frozen tiny WavLM on fold 1 of the tone corpus of `_tones` (checkpoints left out), whose
``config.yaml`` is the resolved configuration as that code wrote it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _tones import make_corpus

from peft_ser import load_model
from peft_ser.config import load_run_config
from peft_ser.evaluation import evaluate

LEGACY = Path(__file__).parent / "data" / "legacy"


def fixed_tone() -> torch.Tensor:
    t = np.arange(16000, dtype=np.float32) / 16000
    return torch.from_numpy((0.3 * np.sin(2 * np.pi * 220 * t) * (1 + t)).astype(np.float32))[None]


def test_a_saved_model_gives_the_logits_it_gave() -> None:
    recorded = json.loads((LEGACY / "model_logits.json").read_text())
    torch.manual_seed(recorded["seed"])  # the tiny backbone's weights are random, from this seed
    model = load_model(LEGACY / "model", device="cpu")
    with torch.no_grad():
        logits = model(fixed_tone(), torch.tensor([16000]))
    np.testing.assert_allclose(logits[0].numpy(), recorded["logits"], rtol=0, atol=1e-5)


def test_a_run_folder_evaluates_to_the_scores_it_recorded(tmp_path: Path) -> None:
    run = shutil.copytree(LEGACY / "run", tmp_path / "run")
    corpus = make_corpus(tmp_path / "tones")
    metrics = evaluate(run, corpus=corpus)
    recorded = json.loads((LEGACY / "run" / "fold-fold1" / "results.json").read_text())["test"]
    [fold] = metrics["folds"]
    assert fold["confusion"] == recorded["confusion"]
    assert fold["uar"] == pytest.approx(recorded["uar"])


def test_a_run_config_loads_as_written(tmp_path: Path) -> None:
    config = load_run_config(LEGACY / "run" / "config.yaml")
    assert config.model.backbone == "tiny-wavlm"
    assert config.model.method == "frozen"
    assert config.optim.epochs == 2
    assert config.data.folds == [1]
