"""Incomplete corpora: as many speaker-independent folds as the corpus allows, with a warning
naming the protocol and what changed; an error only when not one fold can be made."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from _layouts import (
    assert_speaker_independent,
    build_crema_d,
    build_iemocap,
    build_msp_podcast,
    build_ravdess,
)

from peft_ser.corpora import CorpusError, prepare_corpus
from peft_ser.corpora.folds import session_folds_speaker_dev, speaker_block_folds, usable_folds
from peft_ser.data.manifest import Utterance


def keep_actors(root, actors):
    for folder in root.glob("Actor_*"):
        if int(folder.name[-2:]) not in actors:
            shutil.rmtree(folder)
    return root


def warnings_of(out) -> list[str]:
    return json.loads((out / "summary.json").read_text())["warnings"]


def test_ravdess_with_four_actors_leaves_one_actor_out_per_fold(tmp_path, caplog):
    root = keep_actors(build_ravdess(tmp_path / "in"), {1, 2, 3, 4})
    with caplog.at_level(logging.WARNING, logger="peft_ser.corpora.prepare"):
        prepared = prepare_corpus("ravdess", root, tmp_path / "out")
    speaker = {u.key: u.speaker for u in prepared.manifest}
    splits = [
        tuple(sorted({speaker[k] for k in keys}) for keys in (f.train, f.dev, f.test))
        for f in prepared.folds
    ]
    assert splits == [
        (["02", "03"], ["04"], ["01"]),
        (["01", "03"], ["04"], ["02"]),
        (["01", "02"], ["04"], ["03"]),
        (["01", "02"], ["03"], ["04"]),
    ]
    warning = "protocol paper: only 4 speakers (01, 02, 03, 04), made 4 folds instead of 5"
    assert warnings_of(tmp_path / "out") == [warning]
    assert [record.getMessage() for record in caplog.records] == [warning]
    assert_speaker_independent(prepared)


def test_ravdess_with_six_actors_keeps_the_five_paper_folds(tmp_path):
    root = keep_actors(build_ravdess(tmp_path / "in"), set(range(1, 7)))
    prepared = prepare_corpus("ravdess", root, tmp_path / "out")
    speaker = {u.key: u.speaker for u in prepared.manifest}
    assert [sorted({speaker[k] for k in f.test}) for f in prepared.folds] == [
        ["01", "02"],
        ["03"],
        ["04"],
        ["05"],
        ["06"],
    ]
    assert warnings_of(tmp_path / "out") == []
    assert_speaker_independent(prepared)


@pytest.mark.parametrize(("actors", "folds"), [(3, 3), (5, 5), (91, 5)])
def test_crema_d_with_few_actors(tmp_path_factory, tmp_path, actors, folds):
    root = build_crema_d(tmp_path_factory.mktemp("crema"))
    for clip in (root / "AudioWAV").iterdir():
        if int(clip.name[:4]) > 1000 + actors:
            clip.unlink()
    prepared = prepare_corpus("crema-d", root, tmp_path)
    assert len(prepared.folds) == folds
    assert len({u.speaker for u in prepared.manifest}) == actors
    fewer = "protocol paper: only 3 speakers (1001, 1002, 1003), made 3 folds instead of 5"
    assert warnings_of(tmp_path) == ([] if folds == 5 else [fewer])
    assert_speaker_independent(prepared)


@pytest.fixture
def iemocap(tmp_path):
    return build_iemocap(tmp_path / "in")


def drop_sessions(corpus, sessions):
    for session in sessions:
        shutil.rmtree(corpus / f"Session{session}")


@pytest.mark.parametrize("protocol", ["paper", "improvised", "loso-speaker-dev"])
def test_iemocap_with_three_sessions_makes_three_folds(iemocap, tmp_path, protocol):
    drop_sessions(iemocap, (3, 5))
    prepared = prepare_corpus("iemocap", iemocap, tmp_path / "out", protocol=protocol)
    session = {u.key: u.session for u in prepared.manifest}
    tests = [sorted({session[k] for k in f.test}) for f in prepared.folds]
    assert tests == [["Session1"], ["Session2"], ["Session4"]]
    assert warnings_of(tmp_path / "out") == [
        f"protocol {protocol}: only 3 sessions (Session1, Session2, Session4), "
        "made 3 folds instead of 5"
    ]
    assert_speaker_independent(prepared)


def test_iemocap_with_two_sessions_folds_by_speaker(iemocap, tmp_path):
    drop_sessions(iemocap, (3, 4, 5))
    prepared = prepare_corpus("iemocap", iemocap, tmp_path / "out")
    speaker = {u.key: u.speaker for u in prepared.manifest}
    assert [sorted({speaker[k] for k in f.test}) for f in prepared.folds] == [
        ["Ses01F"],
        ["Ses01M"],
        ["Ses02F"],
        ["Ses02M"],
    ]
    assert warnings_of(tmp_path / "out") == [
        "protocol paper: only 2 sessions (Session1, Session2), too few for session folds (a "
        "fold needs a train, a dev and a test session): made 4 folds by speaker instead of 5 "
        "by session"
    ]
    assert "warning: protocol paper: only 2 sessions" in (tmp_path / "out/summary.txt").read_text()
    assert_speaker_independent(prepared)


def test_msp_podcast_without_a_test_split_has_no_usable_fold(tmp_path):
    corpus = build_msp_podcast(tmp_path / "in", "labels_consensus.csv", "Development")
    labels = corpus / "Labels/labels_consensus.csv"
    labels.write_text(labels.read_text().replace(",Test1", ",Test2"))
    with pytest.raises(CorpusError) as error:
        prepare_corpus("msp-podcast", corpus, tmp_path / "out")
    assert str(error.value).startswith(
        "protocol paper: no usable fold: official has no test utterance; no fold can be made "
        "from the 10 usable utterances of MSP-Podcast"
    )
    assert not (tmp_path / "out/manifest.csv").exists()


def utterance(key: str, speaker: str, gender: str, session: str) -> Utterance:
    return Utterance(key, speaker, gender, f"/{key}.wav", "N", session, corpus="c",
                     label="Neutral", duration=1.0, sample_rate=16000, channels=1)  # fmt: skip


def test_folds_with_an_empty_split_are_left_out():
    # session A has both genders, B only a woman, C only a man: with A as test, the
    # speaker-dev rule puts B's woman and C's man in dev and leaves no one to train on
    utterances = [
        utterance("a1", "AF", "F", "A"),
        utterance("a2", "AM", "M", "A"),
        utterance("b1", "BF", "F", "B"),
        utterance("c1", "CM", "M", "C"),
    ]
    plan = usable_folds(session_folds_speaker_dev(utterances, 3))
    assert [(f.name, f.train, f.dev, f.test) for f in plan.folds] == [
        ("fold2", ["a2"], ["a1", "c1"], ["b1"]),
        ("fold3", ["a2", "b1"], ["a1"], ["c1"]),
    ]
    assert plan.warnings == ["fold1 has no train utterance: left out"]


def test_two_speakers_cannot_make_a_fold():
    utterances = [utterance("a", "s1", "F", ""), utterance("b", "s2", "M", "")]
    with pytest.raises(CorpusError) as error:
        speaker_block_folds(utterances, 5)
    assert str(error.value) == (
        "only 2 speakers (s1, s2): a speaker-independent fold needs 3, one each for train, "
        "dev and test"
    )
