"""Any label set, end to end: a folder and a table corpus of 2, 3 and 7 classes prepared,
trained (tiny random WavLM, frozen, 2 epochs), evaluated and used by ``predict``, all through
the command line; every output keeps the user's class names and their order."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from _tones import RATE, tone
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.data.manifest import read_prepared
from peft_ser.inference.predict import load_model

pytestmark = pytest.mark.slow  # prepare, train, evaluate and predict through the CLI

runner = CliRunner()
SPEAKERS = ("ana", "ben", "cat", "dan")
LABEL_SETS = {
    2: ["calm", "tense"],
    3: ["high", "mid", "low"],
    7: ["anger", "boredom", "disgust", "fear", "joy", "sadness", "very surprised"],
}
TRAIN = ["--backbone", "tiny-wavlm", "--method", "frozen", "--folds", "1", "--epochs", "2",
         "--batch-size", "4", "--num-workers", "0", "--set", "data.crop_seconds=0.4",
         "--set", "model.head_dim=16", "--set", "progress=false"]  # fmt: skip


def clip(path: Path, index: int, take: int) -> Path:
    """0.4 s of a tone whose pitch says the class."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(0.4, 150 + 120 * index + 7 * take), RATE, subtype="PCM_16")
    return path


def build_folder(root: Path, labels: list[str]) -> Path:
    for index, label in enumerate(labels):
        for speaker in SPEAKERS:
            for take in range(2):
                clip(root / label / f"{speaker}_{take}.wav", index, take)
    return root


def build_table(root: Path, labels: list[str]) -> Path:
    """One recording per speaker holding a turn of every class (segments), listed in a CSV."""
    rows = []
    for speaker in SPEAKERS:
        turns = [sf.read(clip(root / "tmp.wav", i, 0))[0] for i in range(len(labels))]
        sf.write(root / f"{speaker}.wav", np.concatenate(turns), 16000, subtype="PCM_16")
        for index, label in enumerate(labels):
            start = 0.4 * index
            rows.append([f"{speaker}.wav", label, speaker, start, round(start + 0.4, 6)])
    with open(root / "turns.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "emotion", "who", "start", "end"])
        writer.writerows(rows)
    (root / "tmp.wav").unlink()
    return root / "turns.csv"


def invoke(args: list[str]) -> str:
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("count", [2, 3, 7])
def test_n_classes_prepare_train_evaluate_predict(tmp_path, count):
    labels = LABEL_SETS[count]
    root = build_folder(tmp_path / "data", labels)
    prepared = tmp_path / "prepared/mine"
    mapping = ",".join(labels) if count == 3 else None  # 3: the order given, not sorted
    invoke(["prepare", "folder", "--root", root, "--out", prepared, "--folds-k", "4",
            "--speaker-pattern", "^(?P<speaker>[a-z]+)_",
            *(["--labels", mapping] if mapping else [])])  # fmt: skip
    expected = labels if mapping else sorted(labels)
    assert json.loads((prepared / "labels.json").read_text()) == expected
    run = tmp_path / "run"
    invoke(["train", "--corpus", prepared, "--output-dir", run, *TRAIN])
    (fold,) = json.loads((run / "results.json").read_text())["folds"]
    confusion = fold["test"]["confusion"]
    assert len(confusion) == count and all(len(row) == count for row in confusion)
    assert set(fold["test"]["recall"]) <= set(expected)
    with open(run / "fold-fold1/predictions.csv", newline="") as handle:
        predicted = {row["predicted"] for row in csv.DictReader(handle)}
    assert predicted <= set(expected)
    model_dir = run / "fold-fold1/model"
    assert load_model(model_dir).labels == expected
    scores = json.loads(invoke(["evaluate", run, "--corpus", prepared, "--format", "json"]))
    assert 0.0 <= scores["uar"]["mean"] <= 1.0
    out = invoke(["predict", root / expected[0] / "ana_0.wav", "--model", model_dir,
                  "--format", "json"])  # fmt: skip
    (prediction,) = json.loads(out)
    assert list(prediction["probabilities"]) == expected
    assert prediction["label"] in expected
    header, row = invoke(["predict", root / expected[0] / "ana_0.wav", "--model", model_dir])[
        :-1
    ].split("\n")
    assert header.split("label", 1)[1].split() == " ".join(expected).split()
    assert prediction["label"] in row


def test_segments_of_a_table_train_with_their_names(tmp_path):
    labels = LABEL_SETS[3]
    table = build_table(tmp_path / "data", labels)
    prepared = tmp_path / "prepared/turns"
    invoke(["prepare", "table", "--manifest", table, "--out", prepared,
            "--columns", "path=file,label=emotion,speaker=who", "--folds-k", "4"])  # fmt: skip
    corpus = read_prepared(prepared)
    assert corpus.labels == sorted(labels)
    assert len(corpus.manifest) == 12 and all(u.duration == 0.4 for u in corpus.manifest)
    assert {(u.start, u.end) for u in corpus.manifest} == {(0.0, 0.4), (0.4, 0.8), (0.8, 1.2)}
    run = tmp_path / "run"
    invoke(["train", "--corpus", prepared, "--output-dir", run, *TRAIN])
    (fold,) = json.loads((run / "results.json").read_text())["folds"]
    assert len(fold["test"]["confusion"]) == 3
