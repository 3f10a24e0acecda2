"""MSP-IMPROV and MSP-Podcast: label-file spellings, layout variants, sessions and splits."""

from __future__ import annotations

import pytest
from _layouts import (
    assert_speaker_independent,
    build_msp_improv,
    build_msp_podcast,
    label_counts,
    report_counts,
)

from peft_ser.corpora import CorpusError, prepare_corpus


@pytest.mark.parametrize(
    ("label_file", "audio_level"), [("Evalution.txt", True), ("Evaluation.txt", False)]
)
def test_msp_improv(tmp_path, label_file, audio_level):
    corpus = build_msp_improv(tmp_path / "in", label_file, audio_level)
    prepared = prepare_corpus("msp-improv", corpus, tmp_path / "out")
    assert label_counts(prepared) == {"Angry": 6, "Happy": 6, "Neutral": 6, "Sad": 6}
    assert report_counts(tmp_path / "out") == {
        "malformed_label_row": 1,
        "no_agreement": 1,
        "outside_label_set": 1,
    }
    sizes = [(len(f.train), len(f.dev), len(f.test)) for f in prepared.folds]
    assert sizes == [(16, 4, 4)] * 6
    speaker = {u.key: u.speaker for u in prepared.manifest}
    assert {speaker[k] for k in prepared.folds[0].test} == {"F01", "M01"}
    assert {speaker[k] for k in prepared.folds[0].dev} == {"F06", "M06"}
    assert_speaker_independent(prepared)


def test_msp_improv_loso_speaker_dev(tmp_path):
    corpus = build_msp_improv(tmp_path / "in", "Evalution.txt", True)
    prepared = prepare_corpus("msp-improv", corpus, tmp_path / "out", protocol="loso-speaker-dev")
    speaker = {u.key: u.speaker for u in prepared.manifest}
    assert {speaker[k] for k in prepared.folds[0].dev} == {"F02", "M06"}
    assert_speaker_independent(prepared)


@pytest.mark.parametrize(
    ("label_file", "dev_name"),
    [("labels_consensus.csv", "Development"), ("labels_concensus.csv", "Validation")],
)
def test_msp_podcast(tmp_path, label_file, dev_name):
    corpus = build_msp_podcast(tmp_path / "in", label_file, dev_name)
    prepared = prepare_corpus("msp-podcast", corpus, tmp_path / "out")
    assert label_counts(prepared) == {"Neutral": 3, "Angry": 2, "Sad": 2, "Happy": 3}
    assert report_counts(tmp_path / "out") == {
        "missing_audio": 1,
        "no_agreement": 1,
        "outside_label_set": 2,
    }
    (fold,) = prepared.folds
    assert (fold.name, len(fold.train), len(fold.dev), len(fold.test)) == ("official", 5, 2, 2)
    by_key = {u.key: u for u in prepared.manifest}
    stereo = by_key["MSP-PODCAST_1023_0235"]
    assert (stereo.sample_rate, stereo.channels) == (44100, 2)
    unknown = by_key["MSP-PODCAST_0002_0002"]
    assert (unknown.speaker, unknown.gender) == ("Unknown", "U")
    assert by_key["MSP-PODCAST_0006_0001"].session == "Test2"


def test_msp_podcast_full_labels(tmp_path):
    corpus = build_msp_podcast(tmp_path / "in", "labels_consensus.csv", "Development")
    prepared = prepare_corpus("msp-podcast", corpus, tmp_path / "out", labels="full")
    assert label_counts(prepared)["Contemptuous"] == 1
    assert report_counts(tmp_path / "out")["outside_label_set"] == 1


def test_msp_podcast_wrong_root(tmp_path):
    (tmp_path / "Audios").mkdir()
    with pytest.raises(CorpusError, match=r"labels_consensus\.csv"):
        prepare_corpus("msp-podcast", tmp_path, tmp_path / "out")
