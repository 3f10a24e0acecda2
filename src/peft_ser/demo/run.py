"""The built-in demo: prepare the synthetic corpus, train a real Whisper with LoRA, predict a clip.

It runs the same public functions a user calls (``prepare_corpus``, ``train``, ``predict``) on the
small synthetic corpus in ``demo/CREMA-D`` with Whisper tiny.en weights that install from the
package index, so it works offline on a laptop CPU in a few minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft_ser.config import load_run_config
from peft_ser.corpora import prepare_corpus
from peft_ser.data.manifest import select
from peft_ser.inference.predict import Prediction, predict
from peft_ser.runs.layout import RunDir
from peft_ser.training import train

DEMO_CONFIG = Path("configs/demo.yaml")


@dataclass
class DemoResult:
    run_dir: Path
    test_uar: float
    test_interval: tuple[float, float]
    test_clips: int
    dev_uar: float
    dev_clips: int
    tested_epoch: int
    confusion_png: Path
    model_dir: Path
    clip: Path
    true_label: str
    prediction: Prediction


def run_demo(
    config_path: Path = DEMO_CONFIG,
    corpus_dir: Path | None = None,
    output_dir: Path | None = None,
    epochs: int | None = None,
    seed: int | None = None,
) -> DemoResult:
    """Prepare, train the configured fold, and predict one test clip with the trained model.

    A finished demo run is reused (resume), so running the demo again only predicts.
    """
    overrides: dict[str, Any] = {}
    if corpus_dir is not None:
        overrides["data.corpus_dir"] = str(corpus_dir)
    if output_dir is not None:
        overrides["data.prepared_dir"] = str(output_dir / "prepared")
        overrides["output_dir"] = str(output_dir / "run")
    if epochs is not None:
        overrides["optim.epochs"] = epochs
    if seed is not None:
        overrides["seed"] = seed
    config = load_run_config(config_path, overrides)
    data = config.data
    assert data.corpus_dir is not None and data.prepared_dir is not None, "demo config"
    prepared = prepare_corpus(data.corpus, data.corpus_dir, data.prepared_dir, verbose=True)
    result = train(config, resume=True)
    fold_result = result.folds[0]
    fold = next(f for f in prepared.folds if f.name == fold_result["fold"])
    fold_dir = RunDir(result.run_dir).fold(fold.name)
    clip = select(prepared, fold.test[:1])[0]
    prediction = predict(clip.path, model=str(fold_dir.model))[0]
    return DemoResult(
        run_dir=result.run_dir,
        test_uar=float(fold_result["test"]["uar"]),
        test_interval=(fold_result["test"]["uar_ci95"][0], fold_result["test"]["uar_ci95"][1]),
        test_clips=len(fold.test),
        dev_uar=float(fold_result["dev_uar"]),
        dev_clips=len(fold.dev),
        tested_epoch=int(fold_result["best_epoch"]),
        confusion_png=fold_dir.confusion,
        model_dir=fold_dir.model,
        clip=Path(clip.path),
        true_label=clip.label,
        prediction=prediction,
    )
