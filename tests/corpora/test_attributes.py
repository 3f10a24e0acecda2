"""Attribute targets: ratings read from each corpus's own files, ``--targets``, targets.json."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from _layouts import (
    CHALLENGE_ROWS,
    build_iemocap,
    build_msp_improv,
    build_msp_podcast,
    report_counts,
)

from peft_ser.corpora import CorpusError, load_prepared, prepare_corpus
from peft_ser.data.manifest import (
    PreparedCorpusError,
    read_manifest,
    write_manifest,
)


def ratings(prepared, key):
    utterance = next(u for u in prepared.manifest if u.key == key)
    return utterance.arousal, utterance.valence, utterance.dominance


@pytest.fixture(scope="module")
def podcast(tmp_path_factory: pytest.TempPathFactory):
    return build_msp_podcast(tmp_path_factory.mktemp("pod"), "labels_consensus.csv", "Development")


def test_msp_podcast_attributes_keep_x_and_o(podcast, tmp_path):
    prepared = prepare_corpus("msp-podcast", podcast, tmp_path, targets="attributes")
    assert (prepared.targets, prepared.attributes) == (
        "attributes",
        ("arousal", "valence", "dominance"),
    )
    # EmoAct, EmoVal, EmoDom → arousal, valence, dominance
    assert ratings(prepared, "MSP-PODCAST_0001_0002") == (6.4, 1.6, 5.8)
    by_key = {u.key: u for u in prepared.manifest}
    assert (by_key["MSP-PODCAST_0005_0003"].label, by_key["MSP-PODCAST_0003_0002"].label) == (
        "X",
        "O",
    )
    assert ratings(prepared, "MSP-PODCAST_0005_0003") == (4.4, 2.0, 4.6)
    assert report_counts(tmp_path) == {"missing_audio": 1, "no_attribute_ratings": 1}
    assert len(prepared.manifest) == 12
    (fold,) = prepared.folds
    assert (len(fold.train), len(fold.dev), len(fold.test)) == (7, 1, 3)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["attribute_scale"].startswith("1-7")
    assert summary["attribute_stats"]["arousal"]["max"] == 6.4
    assert load_prepared(tmp_path) == prepared


def test_msp_podcast_both_excludes_unlabelled_and_unrated(podcast, tmp_path):
    prepared = prepare_corpus("msp-podcast", podcast, tmp_path, targets="both")
    assert report_counts(tmp_path) == {
        "missing_audio": 1,
        "no_agreement": 1,
        "outside_label_set": 2,
        "no_attribute_ratings": 1,
    }
    assert prepared.labels == ["Neutral", "Angry", "Sad", "Happy"]
    assert all(u.arousal is not None for u in prepared.manifest)


def test_categorical_keeps_ratings_but_trains_labels(podcast, tmp_path):
    prepared = prepare_corpus("msp-podcast", podcast, tmp_path)
    assert (prepared.targets, prepared.attributes) == ("categorical", ())
    assert ratings(prepared, "MSP-PODCAST_0001_0002") == (6.4, 1.6, 5.8)
    assert ratings(prepared, "MSP-PODCAST_0004_0002") == (None, None, None)


def test_iemocap_summary_line_is_valence_arousal_dominance(tmp_path):
    corpus = build_iemocap(tmp_path / "in")
    prepared = prepare_corpus("iemocap", corpus, tmp_path / "out", targets="both")
    # the line reads [1.5000, 4.0000, 3.5000] = [V, A, D]
    assert ratings(prepared, "Ses01F_impro01_M000") == (4.0, 1.5, 3.5)
    assert ratings(prepared, "Ses01F_impro01_F000") == (2.5, 2.5, 2.5)
    assert prepared.attribute_scale.startswith("1-5")


def test_msp_improv_consensus_line_ratings(tmp_path):
    corpus = build_msp_improv(tmp_path / "in", "Evalution.txt", True)
    prepared = prepare_corpus("msp-improv", corpus, tmp_path / "out", targets="attributes")
    assert ratings(prepared, "MSP-IMPROV-S01A-F01-P-FM01") == (4.2, 1.8, 3.6)
    assert ratings(prepared, "MSP-IMPROV-S02H-M01-R-MF02") == (2.4, 3.0, 2.8)
    # X and O keep their ratings when only attributes are trained
    assert {u.label for u in prepared.manifest} == {"Neutral", "Angry", "Sad", "Happy", "X", "O"}


def test_corpus_without_ratings_refuses_attribute_targets(tmp_path):
    corpus = tmp_path  # the targets are checked before the corpus is read
    with pytest.raises(CorpusError, match="CREMA-D has no attribute ratings"):
        prepare_corpus("crema-d", corpus, tmp_path / "out", targets="attributes")
    with pytest.raises(CorpusError, match="--targets 'dims': choose one of"):
        prepare_corpus("crema-d", corpus, tmp_path / "out", targets="dims")


def test_old_manifest_without_rating_columns_loads(podcast, tmp_path):
    prepare_corpus("msp-podcast", podcast, tmp_path)
    manifest = tmp_path / "manifest.csv"
    lines = manifest.read_text().splitlines()
    # the three rating columns and the two vote columns (empty here) came later
    manifest.write_text("\n".join(line.rsplit(",", 5)[0] for line in lines) + "\n")
    assert not (tmp_path / "targets.json").exists()
    prepared = load_prepared(tmp_path)
    assert prepared.targets == "categorical"
    assert all(u.arousal is None and u.dominance is None for u in prepared.manifest)


def test_targets_file_promising_missing_ratings_is_refused(podcast, tmp_path):
    prepare_corpus("msp-podcast", podcast, tmp_path, targets="attributes")
    manifest = read_manifest(tmp_path / "manifest.csv")
    write_manifest(tmp_path / "manifest.csv", [replace(manifest[0], valence=None), *manifest[1:]])
    with pytest.raises(PreparedCorpusError, match="1 utterances lack a rating"):
        load_prepared(tmp_path)


def test_msp_podcast_challenge_protocol_counts(tmp_path):
    corpus = build_msp_podcast(
        tmp_path / "in", "labels_consensus.csv", "Development", CHALLENGE_ROWS
    )
    out = tmp_path / "out"
    prepared = prepare_corpus("msp-podcast", corpus, out, labels="challenge8", protocol="challenge")
    assert prepared.labels == [
        "Angry", "Sad", "Happy", "Surprise", "Fear", "Disgust", "Contempt", "Neutral",
    ]  # fmt: skip
    assert report_counts(out) == {"no_agreement": 2, "outside_label_set": 1}
    sizes = {f.name: (len(f.train), len(f.dev), len(f.test)) for f in prepared.folds}
    assert sizes == {"test1": (8, 2, 2), "test3": (8, 2, 3)}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["headline_metric"] == "macro_f1"
    # Train 1 of each class, Development N C, Test1 H S, Test3 U F D, Test2 A
    assert summary["total"]["per_label"] == dict.fromkeys(prepared.labels, 2)


def test_msp_podcast_challenge_attributes_keep_x_and_o(tmp_path):
    corpus = build_msp_podcast(
        tmp_path / "in", "labels_consensus.csv", "Validation", CHALLENGE_ROWS
    )
    out = tmp_path / "out"
    prepared = prepare_corpus(
        "msp-podcast", corpus, out, labels="challenge8", protocol="challenge", targets="attributes"
    )
    assert report_counts(out) == {}
    sizes = {f.name: (len(f.train), len(f.dev), len(f.test)) for f in prepared.folds}
    assert sizes == {"test1": (10, 2, 3), "test3": (10, 2, 3)}
    assert json.loads((out / "summary.json").read_text())["headline_metric"] == "ccc"
