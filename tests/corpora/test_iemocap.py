"""IEMOCAP: consensus lines only, letter-suffixed dialogs, defects reported, session folds."""

from __future__ import annotations

import pytest
from _layouts import assert_speaker_independent, build_iemocap, label_counts, report_counts, tone

from peft_ser.corpora import CorpusError, load_prepared, prepare_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory):
    return build_iemocap(tmp_path_factory.mktemp("iemocap"))


def test_paper4_counts_folds_and_report(corpus, tmp_path):
    # the parent of IEMOCAP_full_release is accepted as root
    prepared = prepare_corpus("iemocap", corpus.parent, tmp_path)
    assert label_counts(prepared) == {"Neutral": 8, "Angry": 5, "Sad": 5, "Happy": 10}
    assert prepared.labels == ["Neutral", "Angry", "Sad", "Happy"]
    assert report_counts(tmp_path) == {
        "no_agreement": 5,
        "outside_label_set": 6,
        "unknown_label": 1,
        "missing_audio": 1,
        "silent_audio": 1,
        "unreadable_audio": 1,
        "empty_audio": 1,
        "duplicate": 1,
        "unlabelled_audio": 1,
    }
    per_session = {
        s: sum(u.session == s for u in prepared.manifest)
        for s in ("Session1", "Session2", "Session3", "Session4", "Session5")
    }
    assert per_session == {
        "Session1": 5,
        "Session2": 4,
        "Session3": 7,
        "Session4": 5,
        "Session5": 7,
    }
    sizes = [(f.name, len(f.train), len(f.dev), len(f.test)) for f in prepared.folds]
    assert sizes == [
        ("fold1", 16, 7, 5),
        ("fold2", 17, 7, 4),
        ("fold3", 14, 7, 7),
        ("fold4", 16, 7, 5),
        ("fold5", 16, 5, 7),
    ]
    assert_speaker_independent(prepared)
    assert load_prepared(tmp_path) == prepared


def test_speaker_gender_from_turn_not_dialog(corpus, tmp_path):
    prepared = prepare_corpus("iemocap", corpus, tmp_path)
    by_key = {u.key: u for u in prepared.manifest}
    turn = by_key["Ses03M_impro05a_F017"]
    assert (turn.speaker, turn.gender, turn.raw_label, turn.label) == ("Ses03F", "F", "sad", "Sad")
    assert by_key["Ses01F_impro01_M001"].label == "Happy"  # exc merged into Happy
    assert "Ses01F_impro01_F099" not in by_key  # only files directly in EmoEvaluation/
    assert (turn.sample_rate, turn.channels, turn.duration) == (16000, 1, 0.2)


def test_full_label_set(corpus, tmp_path):
    prepared = prepare_corpus("iemocap", corpus, tmp_path, labels="full")
    assert label_counts(prepared) == {
        "Neutral": 8,
        "Angry": 5,
        "Sad": 5,
        "Happy": 5,
        "Excited": 5,
        "Frustrated": 5,
    }
    assert prepared.labels[:4] == ["Neutral", "Angry", "Sad", "Happy"]
    assert report_counts(tmp_path)["outside_label_set"] == 1


def test_improvised_protocol(corpus, tmp_path):
    prepared = prepare_corpus("iemocap", corpus, tmp_path, protocol="improvised")
    assert len(prepared.manifest) == 20
    assert all("_impro" in u.key for u in prepared.manifest)
    assert report_counts(tmp_path)["outside_protocol"] == 11
    assert_speaker_independent(prepared)


def test_loso_with_dev_speakers(corpus, tmp_path):
    prepared = prepare_corpus("iemocap", corpus, tmp_path, protocol="loso-speaker-dev")
    speaker = {u.key: u.speaker for u in prepared.manifest}
    first = prepared.folds[0]
    assert {speaker[k] for k in first.dev} == {"Ses02F", "Ses05M"}
    assert {speaker[k] for k in first.test} == {"Ses01F", "Ses01M"}
    assert len({speaker[k] for k in first.train}) == 6
    assert_speaker_independent(prepared)


def test_wrong_root_names_expected_layout(tmp_path):
    with pytest.raises(CorpusError, match="Session1 … Session5"):
        prepare_corpus("iemocap", tmp_path, tmp_path / "out")


def test_bad_options(corpus, tmp_path):
    with pytest.raises(CorpusError, match="label set 'paper7'"):
        prepare_corpus("iemocap", corpus, tmp_path, labels="paper7")
    with pytest.raises(CorpusError, match="protocol"):
        prepare_corpus("iemocap", corpus, tmp_path, protocol="random")
    with pytest.raises(CorpusError, match="unknown corpus"):
        prepare_corpus("timit", corpus, tmp_path)


def test_one_speaker_cannot_make_a_fold(tmp_path):
    corpus = tmp_path / "IEMOCAP_full_release"
    evaluation = corpus / "Session1/dialog/EmoEvaluation"
    evaluation.mkdir(parents=True)
    (evaluation / "Ses01F_impro01.txt").write_text(
        "[1.0 - 2.0]\tSes01F_impro01_F000\tneu\t[2, 2, 2]\n"
    )
    tone(corpus / "Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav")
    with pytest.raises(CorpusError) as error:
        prepare_corpus("iemocap", corpus, tmp_path / "out")
    assert str(error.value).startswith(
        "protocol paper: only 1 session (Session1) and 1 speaker (Ses01F): a speaker-independent "
        "fold needs 3, one each for train, dev and test; no fold can be made from the 1 usable "
        "utterances of IEMOCAP"
    )
