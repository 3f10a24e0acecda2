"""RAVDESS and EmoDB: labels from file names, calm option, speaker-block folds."""

from __future__ import annotations

import pytest
from _layouts import (
    EMODB_SPEAKERS,
    assert_speaker_independent,
    build_emodb,
    build_ravdess,
    label_counts,
    report_counts,
)

from peft_ser.corpora import prepare_corpus


@pytest.fixture(scope="module")
def ravdess(tmp_path_factory: pytest.TempPathFactory):
    return build_ravdess(tmp_path_factory.mktemp("ravdess"))


def test_ravdess_paper4_drops_calm(ravdess, tmp_path):
    prepared = prepare_corpus("ravdess", ravdess, tmp_path)
    assert label_counts(prepared) == {"Neutral": 24, "Happy": 24, "Angry": 24}
    assert report_counts(tmp_path) == {
        "outside_label_set": 24,
        "outside_protocol": 1,
        "unlabelled_audio": 1,
    }
    first = prepared.manifest[0]
    assert (first.sample_rate, first.speaker, first.gender) == (48000, "01", "M")


def test_ravdess_calm_merged(ravdess, tmp_path):
    prepared = prepare_corpus("ravdess", ravdess, tmp_path, labels="paper4+calm")
    assert label_counts(prepared) == {"Neutral": 48, "Happy": 24, "Angry": 24}


def test_ravdess_actor_folds(ravdess, tmp_path):
    prepared = prepare_corpus("ravdess", ravdess, tmp_path)
    speaker = {u.key: u.speaker for u in prepared.manifest}
    blocks = [sorted({speaker[k] for k in f.test}) for f in prepared.folds]
    assert [len(b) for b in blocks] == [5, 5, 5, 5, 4]
    assert sorted({speaker[k] for k in prepared.folds[0].dev}) == ["21", "22", "23", "24"]
    assert sorted({speaker[k] for k in prepared.folds[4].dev}) == ["17", "18", "19", "20"]
    assert_speaker_independent(prepared)


def test_emodb(tmp_path):
    corpus = build_emodb(tmp_path / "emodb")
    prepared = prepare_corpus("emodb", tmp_path, tmp_path / "out")  # the parent is accepted
    assert label_counts(prepared) == {"Angry": 10, "Neutral": 10}
    assert report_counts(tmp_path / "out") == {"outside_label_set": 10, "unlabelled_audio": 1}
    speaker = {u.key: u.speaker for u in prepared.manifest}
    blocks = [sorted({speaker[k] for k in f.test}) for f in prepared.folds]
    assert blocks == [EMODB_SPEAKERS[i : i + 2] for i in range(0, 10, 2)]
    assert [len(f.train) for f in prepared.folds] == [12] * 5
    assert {u.gender for u in prepared.manifest if u.speaker == "08"} == {"F"}
    assert_speaker_independent(prepared)
    full = prepare_corpus("emodb", corpus, tmp_path / "full", labels="full")
    assert label_counts(full) == {"Angry": 10, "Neutral": 10, "Fearful": 10}
