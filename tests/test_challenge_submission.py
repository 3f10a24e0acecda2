"""``peft-ser predict --format challenge``: the Interspeech 2025 MSP-Podcast challenge's
submission file, byte for byte as the organisers' baseline writes it
(msplabresearch/MSP-Podcast_Challenge_IS2025, ``train_eval_files/eval_cat_ser.py``: Python's
``csv.writer``, header ``Filename,Prediction``, the file name, the eight scores ``%.4f``
joined by ``", "`` in the order Angry, Sad, Happy, Surprise, Fear, Disgust, Contempt,
Neutral), and its refusals."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.config import ModelConfig
from peft_ser.inference.challenge import SubmissionError, check_challenge_labels, submission_text
from peft_ser.inference.files import format_predictions
from peft_ser.inference.predict import Prediction
from peft_ser.models.ser_model import build_model

CHALLENGE = ["Angry", "Sad", "Happy", "Surprise", "Fear", "Disgust", "Contempt", "Neutral"]
MODEL_ORDER = ["Neutral", "Angry", "Sad", "Happy", "Surprise", "Fear", "Disgust", "Contempt"]
"""A model of the challenge's classes in another order: the writer puts them in its order."""


def _prediction(source: str, scores: list[float], labels: list[str] = MODEL_ORDER) -> Prediction:
    probabilities = dict(zip(labels, scores, strict=True))
    return Prediction(source, 3.2, max(probabilities, key=probabilities.__getitem__), probabilities)


def test_the_submission_is_the_organisers_csv_byte_for_byte() -> None:
    predictions = [
        # Neutral, Angry, Sad, Happy, Surprise, Fear, Disgust, Contempt
        _prediction("/data/Audios/MSP-PODCAST_test3_0001.wav",
                    [0.2, 0.05, 0.1, 0.4, 0.05, 0.1, 0.05, 0.05]),
        _prediction("MSP-PODCAST_test3_0002.wav",
                    [0.000049, 0.6, 0.1, 0.1, 0.1, 0.05, 0.05, 0.000051]),
    ]  # fmt: skip
    assert format_predictions(predictions, "challenge") == (
        "Filename,Prediction\r\n"
        'MSP-PODCAST_test3_0001.wav,"0.0500, 0.1000, 0.4000, 0.0500, 0.1000, 0.0500, 0.0500, '
        '0.2000"\r\n'
        'MSP-PODCAST_test3_0002.wav,"0.6000, 0.1000, 0.1000, 0.1000, 0.0500, 0.0500, 0.0001, '
        '0.0000"\r\n'
    )


def test_the_organisers_reading_of_the_file_finds_each_prediction() -> None:
    """Their scoring parses ``Prediction`` and takes the highest score as the class
    (msplabresearch/MSP-Podcast_Challenge, ``eval_cat_ser_weighted.py``)."""
    rng = np.random.default_rng(0)
    predictions = []
    for index in range(20):
        scores = rng.dirichlet(np.ones(8)).tolist()
        predictions.append(_prediction(f"MSP-PODCAST_test3_{index:04d}.wav", scores))
    rows = list(csv.DictReader(io.StringIO(submission_text(predictions), newline="")))
    for row, prediction in zip(rows, predictions, strict=True):
        scores = np.array([float(value) for value in row["Prediction"].strip('"').split(",")])
        assert CHALLENGE[int(np.argmax(scores))] == prediction.label
        assert row["Filename"] == Path(prediction.source).name


@pytest.mark.parametrize(
    ("labels", "predicts"),
    [
        (["Neutral", "Angry", "Sad", "Happy"], "Neutral, Angry, Sad, Happy"),
        (["Neutral", "Angry", "Sad", "Happy", "Surprised", "Fearful", "Disgusted", "Contemptuous"],
         "Neutral, Angry, Sad, Happy, Surprised, Fearful, Disgusted, Contemptuous"),
        ([*CHALLENGE, "Other"], ", ".join([*CHALLENGE, "Other"])),
        ([*CHALLENGE[:7], "Angry"], ", ".join([*CHALLENGE[:7], "Angry"])),
        ([], "no classes"),
    ],
)  # fmt: skip
def test_a_model_without_the_eight_classes_is_refused(labels: list[str], predicts: str) -> None:
    with pytest.raises(SubmissionError) as refused:
        check_challenge_labels(labels, "runs/x/model")
    assert str(refused.value) == (
        "runs/x/model: --format challenge needs a model of the challenge's 8 classes (Angry, "
        f"Sad, Happy, Surprise, Fear, Disgust, Contempt, Neutral), and this one predicts "
        f"{predicts} (train it on a corpus prepared with --labels challenge8)"
    )


def test_predictions_of_another_label_set_or_of_attributes_only_are_refused() -> None:
    four = _prediction("a.wav", [0.7, 0.1, 0.1, 0.1], ["Neutral", "Angry", "Sad", "Happy"])
    attributes_only = Prediction("b.wav", 2.0, "", {}, attributes={"arousal": 4.0})
    for prediction in (four, attributes_only):
        with pytest.raises(SubmissionError, match="needs a model of the challenge's 8 classes"):
            submission_text([prediction])


def test_two_inputs_with_one_file_name_are_refused() -> None:
    scores = [0.2, 0.05, 0.1, 0.4, 0.05, 0.1, 0.05, 0.05]
    same = [_prediction("a/MSP-PODCAST_test3_0001.wav", scores),
            _prediction("b/MSP-PODCAST_test3_0001.wav", scores)]  # fmt: skip
    with pytest.raises(SubmissionError) as refused:
        submission_text(same)
    assert str(refused.value) == (
        "--format challenge: inputs share the file name 'MSP-PODCAST_test3_0001.wav'; a "
        "submission names each test file once, by its name alone"
    )


def _model(folder: Path, labels: list[str]) -> Path:
    model = build_model(ModelConfig(backbone="tiny-wavlm", labels=labels), pretrained=False)
    return model.save(folder)


def _clips(folder: Path) -> list[Path]:
    """Two test files and a training file beside them, as in the release's ``Audios/``."""
    names = [
        "MSP-PODCAST_test3_0002.wav",
        "MSP-PODCAST_0101_0001.wav",
        "MSP-PODCAST_test3_0001.wav",
    ]
    for index, name in enumerate(names):
        samples = np.sin(np.arange(16000) / (5.0 + index)).astype(np.float32) * 0.1
        sf.write(folder / name, samples, 16000)
    return [folder / name for name in names]


def test_predict_writes_the_submission_of_the_test_files(tmp_path: Path) -> None:
    model = _model(tmp_path / "model", MODEL_ORDER)
    audios = tmp_path / "Audios"
    audios.mkdir()
    _clips(audios)
    out = tmp_path / "submission.csv"
    runner = CliRunner()
    done = runner.invoke(
        app,
        ["predict", str(audios / "*test3*"), "-m", str(model), "-f", "challenge", "-o", str(out)],
    )
    assert done.exit_code == 0, done.output
    text = out.read_bytes().decode()
    lines = text.split("\r\n")
    assert lines[0] == "Filename,Prediction" and lines[-1] == "" and len(lines) == 4
    as_csv = runner.invoke(app, ["predict", str(audios / "*test3*"), "-m", str(model), "-f", "csv"])
    labels = {
        Path(row["source"]).name: row["label"] for row in csv.DictReader(io.StringIO(as_csv.stdout))
    }
    for row in csv.DictReader(io.StringIO(text, newline="")):
        scores = [float(value) for value in row["Prediction"].split(", ")]
        assert len(scores) == 8 and abs(sum(scores) - 1) < 1e-3
        assert CHALLENGE[int(np.argmax(scores))] == labels[row["Filename"]]
    assert sorted(labels) == ["MSP-PODCAST_test3_0001.wav", "MSP-PODCAST_test3_0002.wav"]


def test_predict_refuses_a_model_of_other_classes_before_predicting(tmp_path: Path) -> None:
    model = _model(tmp_path / "model", ["Neutral", "Angry", "Sad", "Happy"])
    clips = _clips(tmp_path)
    out = tmp_path / "submission.csv"
    done = CliRunner().invoke(
        app, ["predict", *map(str, clips), "-m", str(model), "-f", "challenge", "-o", str(out)]
    )
    assert done.exit_code == 2 and "Traceback" not in done.output
    assert done.stderr == (
        f"error: {model}: --format challenge needs a model of the challenge's 8 classes (Angry, "
        "Sad, Happy, Surprise, Fear, Disgust, Contempt, Neutral), and this one predicts "
        "Neutral, Angry, Sad, Happy (train it on a corpus prepared with --labels challenge8)\n"
    )
    assert not out.exists()


def test_predict_refuses_two_inputs_of_one_name_before_loading_the_model(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        _clips(tmp_path / folder)
    out = tmp_path / "submission.csv"
    done = CliRunner().invoke(
        app,
        ["predict", str(tmp_path / "*" / "*test3_0001.wav"), "-m", str(tmp_path / "no-model"),
         "-f", "challenge", "-o", str(out)],
    )  # fmt: skip
    assert done.exit_code == 2 and not out.exists()
    assert done.stderr == (
        "error: --format challenge: inputs share the file name 'MSP-PODCAST_test3_0001.wav'; a "
        "submission names each test file once, by its name alone\n"
    )
