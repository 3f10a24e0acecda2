"""The submission file of the Interspeech 2025 MSP-Podcast challenge's categorical task.

Its form is the one the organisers' baseline writes for the unlabelled test files
(msplabresearch/MSP-Podcast_Challenge_IS2025, ``train_eval_files/eval_cat_ser.py``): a CSV
written by Python's ``csv.writer`` in its default dialect (``\\r\\n`` line ends, a field
quoted when it holds a comma), the header ``Filename,Prediction``, then one row per test
file: the file's name as it lies in the audio folder (``MSP-PODCAST_…wav``), and the eight
class scores with four decimals, joined by ``", "``, in the baseline's class order Angry, Sad,
Happy, Surprise, Fear, Disgust, Contempt, Neutral. The organisers' scoring of such a file
takes the highest score of each row as its class (``np.argmax`` over ``Prediction`` in
msplabresearch/MSP-Podcast_Challenge, ``eval_cat_ser_weighted.py``) and ranks by macro-F1.

The baseline writes its raw logits; peft-ser writes the model's probabilities, whose highest
score is the same class. The challenge's web page, which the baseline's README names for the
file-format instructions, could not be read here: the form above is the organisers' code's.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Sequence

from peft_ser.corpora.msp_podcast import CHALLENGE_CLASSES
from peft_ser.inference.predict import Prediction
from peft_ser.utils.errors import UserError

CHALLENGE_LABELS = tuple(CHALLENGE_CLASSES.values())
"""The challenge's eight classes in the order of a row's scores."""
HEADER = ("Filename", "Prediction")


class SubmissionError(UserError, ValueError):
    """Predictions that cannot make a challenge submission: a model without the challenge's
    eight classes, or two inputs with the same file name."""


def check_challenge_labels(labels: Sequence[str], model: str) -> None:
    """Refuse a model (named ``model`` in the message) whose classes are not the challenge's
    eight, in any order."""
    if len(labels) != len(CHALLENGE_LABELS) or set(labels) != set(CHALLENGE_LABELS):
        predicts = ", ".join(labels) if labels else "no classes"
        raise SubmissionError(
            f"{model}: --format challenge needs a model of the challenge's 8 classes "
            f"({', '.join(CHALLENGE_LABELS)}), and this one predicts {predicts} (train it on "
            "a corpus prepared with --labels challenge8)"
        )


def check_file_names(sources: Sequence[str]) -> list[str]:
    """The file names of ``sources`` (paths) as a submission names them; refused when two
    inputs share one, which the organisers could not tell apart."""
    names = [os.path.basename(source) for source in sources]
    twice = sorted(name for name, count in Counter(names).items() if count > 1)
    if twice:
        raise SubmissionError(
            f"--format challenge: inputs share the file name {twice[0]!r}; a submission names "
            "each test file once, by its name alone"
        )
    return names


def submission_text(predictions: Sequence[Prediction], model: str = "the model") -> str:
    """The submission file's text for ``predictions``, one row per input in their order."""
    names = check_file_names([prediction.source for prediction in predictions])
    rows: list[Sequence[str]] = [HEADER]
    for name, prediction in zip(names, predictions, strict=True):
        check_challenge_labels(list(prediction.probabilities), model)
        scores = ", ".join(f"{prediction.probabilities[label]:.4f}" for label in CHALLENGE_LABELS)
        rows.append((name, scores))
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue()
