"""CREMA-D: multimodal crowd vote, ties dropped, silent file found, 5 actor folds."""

from __future__ import annotations

import pytest
from _layouts import assert_speaker_independent, build_crema_d, label_counts, report_counts

from peft_ser.corpora import CorpusError, prepare_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return build_crema_d(tmp_path_factory.mktemp("crema"))


def test_counts_and_report(corpus, tmp_path):
    prepared = prepare_corpus("crema-d", corpus, tmp_path)
    assert label_counts(prepared) == {"Happy": 91, "Neutral": 91, "Angry": 1, "Sad": 1}
    assert report_counts(tmp_path) == {
        "no_agreement": 2,
        "outside_label_set": 1,
        "silent_audio": 1,
        "unlabelled_audio": 1,
    }
    by_key = {u.key: u for u in prepared.manifest}
    assert by_key["1005_IOM_HAP_XX"].label == "Sad"  # the crowd vote, not the file name
    assert (by_key["1002_ITS_ANG_XX"].gender, by_key["1001_DFA_NEU_XX"].gender) == ("F", "M")
    assert by_key["1091_DFA_NEU_XX"].gender == "U"  # absent from VideoDemographics.csv


def test_silent_file_is_found_only_when_checked(corpus, tmp_path):
    prepared = prepare_corpus("crema-d", corpus, tmp_path, check_silence=False)
    assert "1076_MTI_SAD_XX" in {u.key for u in prepared.manifest}


def test_contiguous_actor_folds(corpus, tmp_path):
    prepared = prepare_corpus("crema-d", corpus, tmp_path)
    speaker = {u.key: u.speaker for u in prepared.manifest}

    def actors(keys: list[str]) -> list[int]:
        return sorted({int(speaker[k]) for k in keys})

    tests = [actors(f.test) for f in prepared.folds]
    assert [len(t) for t in tests] == [19, 18, 18, 18, 18]
    assert tests[0] == list(range(1001, 1020)) and tests[4] == list(range(1074, 1092))
    assert actors(prepared.folds[0].dev) == list(range(1077, 1092))
    assert actors(prepared.folds[4].dev) == list(range(1059, 1074))
    assert [len(actors(f.train)) for f in prepared.folds] == [57, 58, 58, 58, 58]
    fold1 = prepared.folds[0]
    assert (len(fold1.train), len(fold1.dev), len(fold1.test)) == (114, 30, 40)
    assert_speaker_independent(prepared)


def test_full_label_set(corpus, tmp_path):
    prepared = prepare_corpus("crema-d", corpus, tmp_path, labels="full")
    assert label_counts(prepared)["Fearful"] == 1
    assert report_counts(tmp_path)["no_agreement"] == 2


def test_vote_table_without_the_vote_column_names_it(tmp_path):
    (tmp_path / "AudioWAV").mkdir()
    (tmp_path / "processedResults").mkdir()
    (tmp_path / "processedResults/summaryTable.csv").write_text('"","FileName","VoiceVote"\n')
    with pytest.raises(CorpusError, match="multimodalvote"):
        prepare_corpus("crema-d", tmp_path, tmp_path / "out")
