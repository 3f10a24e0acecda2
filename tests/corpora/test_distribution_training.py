"""Categorical training on a folder prepared with ``--targets distribution`` reads exactly the
utterances and folds of the categorical preparation: the utterances kept for their votes alone
(label ``""``) are left out of class training and evaluation."""

from __future__ import annotations

from pathlib import Path

import pytest
from _tones import tiny_run
from _vote_layouts import build_iemocap_votes

import peft_ser.training.run as run_module
from peft_ser.corpora import prepare_corpus
from peft_ser.data.manifest import select
from peft_ser.evaluation.evaluate import evaluation_plan
from peft_ser.models.tasks import usable
from peft_ser.training import train


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("votes-training")
    corpus = build_iemocap_votes(root)
    prepare_corpus("iemocap", corpus, root / "categorical")
    prepare_corpus("iemocap", corpus, root / "distribution", targets="distribution")
    return root / "categorical", root / "distribution"


class _Seen(Exception):
    """Raised by the stand-in fold runner once it has recorded what training gave it."""


def _what_training_reads(folder: Path, out: Path, monkeypatch: pytest.MonkeyPatch):
    seen = []

    class Recorder:
        def __init__(self, config, accelerator, prepared, fold, *rest) -> None:
            seen.append((config.model.task, config.model.labels, prepared, fold))

        def run(self) -> None:
            raise _Seen

    monkeypatch.setattr(run_module, "FoldRunner", Recorder)
    with pytest.raises(_Seen):
        train(tiny_run(folder, out, **{"model.task": "categorical"}))
    ((task, labels, prepared, fold),) = seen
    return task, labels, prepared.manifest, fold


def test_training_reads_the_categorical_utterances_and_folds(folders, tmp_path, monkeypatch):
    categorical, distribution = folders
    expected = _what_training_reads(categorical, tmp_path / "a", monkeypatch)
    seen = _what_training_reads(distribution, tmp_path / "b", monkeypatch)
    assert seen == expected
    assert seen[0] == "categorical" and all(u.label for u in seen[2])


def test_evaluation_scores_a_class_model_on_the_categorical_utterances(folders):
    """evaluate reads the whole folder; a class model is scored on the utterances its task can
    use (`usable`), which are the categorical preparation's, fold by fold."""
    categorical, distribution = folders
    expected = evaluation_plan("model-folder", categorical, None).prepared
    seen = evaluation_plan("model-folder", distribution, None).prepared
    assert [f.name for f in seen.folds] == [f.name for f in expected.folds]
    for mine, theirs in zip(seen.folds, expected.folds, strict=True):
        for split in ("train", "dev", "test"):
            scored = usable(select(seen, getattr(mine, split)), "categorical", seen.labels)
            assert scored == select(expected, getattr(theirs, split))


@pytest.mark.slow
def test_categorical_training_on_a_distribution_folder_is_unchanged(folders, tmp_path):
    categorical, distribution = folders
    results = [
        train(
            tiny_run(folder, tmp_path / name, **{"optim.epochs": 1, "model.task": "categorical"})
        ).folds
        for name, folder in (("a", categorical), ("b", distribution))
    ]
    for fold in results:
        for row in fold[0]["history"]:
            row.pop("seconds")
    assert results[0] == results[1]
    predictions = [(tmp_path / name / "fold-fold1/predictions.csv").read_text() for name in "ab"]
    assert predictions[0] == predictions[1]
