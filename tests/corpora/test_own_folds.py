"""Generated folds (speaker-independent k-fold with dev from the training speakers, or
over utterances), the folds a table gives, and the leakage check every prepared corpus gets."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from _layouts import (
    assert_speaker_independent,
    build_crema_d,
    build_emodb,
    build_iemocap,
    build_msp_podcast,
    build_ravdess,
)

from peft_ser.corpora import CorpusError, prepare_corpus
from peft_ser.corpora.folds import (
    given_folds,
    shared_speakers,
    speaker_kfold,
    speaker_leakage,
    utterance_kfold,
)
from peft_ser.data.manifest import Fold, Utterance


def utterances(per_speaker: dict[str, dict[str, int]]) -> list[Utterance]:
    """``{speaker: {label: count}}`` as utterances (no audio needed by fold rules)."""
    return [
        Utterance(f"{speaker}-{label}-{i}", speaker, "U", "/x.wav", label, corpus="t",
                  label=label, duration=1.0, sample_rate=16000, channels=1)
        for speaker, counts in per_speaker.items()
        for label, count in counts.items()
        for i in range(count)
    ]  # fmt: skip


def speakers_of(items: list[Utterance], keys: list[str]) -> set[str]:
    speaker = {u.key: u.speaker for u in items}
    return {speaker[key] for key in keys}


UNEVEN = utterances({f"p{n:02d}": {"a": 2 + n % 4, "b": 1 + n % 3, "c": n % 2} for n in range(17)})


@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_every_generated_fold_is_speaker_independent_and_tests_each_speaker_once(k):
    plan = speaker_kfold(k, seed=0)(UNEVEN, k)
    assert len(plan.folds) == k and plan.warnings == []
    tested = Counter()
    for fold in plan.folds:
        train, dev, test = (speakers_of(UNEVEN, keys) for keys in (fold.train, fold.dev, fold.test))
        assert train and dev and test
        assert not train & dev and not train & test and not dev & test
        assert len(fold.train) + len(fold.dev) + len(fold.test) == len(UNEVEN)
        tested.update(test)
    assert tested == Counter({f"p{n:02d}": 1 for n in range(17)})


def test_folds_are_stratified_by_label():
    # ten one-label speakers: only stratified folds pair an "a" speaker with a "b" speaker
    items = utterances(
        {f"a{n}": {"a": 10} for n in range(5)} | {f"b{n}": {"b": 10} for n in range(5)}
    )
    for seed in range(5):
        plan = speaker_kfold(5, seed)(items, 5)
        for fold in plan.folds:
            assert Counter(key[0] for key in fold.test) == {"a": 10, "b": 10}, seed


def test_dev_speakers_come_from_the_training_speakers():
    items = utterances({f"s{n}": {"a": 3, "b": 3} for n in range(10)})
    for fold in speaker_kfold(5, 0)(items, 5).folds:
        train, dev, test = (speakers_of(items, keys) for keys in (fold.train, fold.dev, fold.test))
        assert (len(train), len(dev), len(test)) == (6, 2, 2)


def test_folds_are_reproducible_from_the_seed():
    first, again = (speaker_kfold(5, 3)(UNEVEN, 5).folds for _ in range(2))
    assert first == again
    other = speaker_kfold(5, 4)(UNEVEN, 5).folds
    assert [set(f.test) for f in other] != [set(f.test) for f in first]


def test_fewer_speakers_than_folds_leave_one_speaker_out():
    items = utterances({"x": {"a": 2, "b": 2}, "y": {"a": 2, "b": 2}, "z": {"a": 1, "b": 1}})
    plan = speaker_kfold(5, 0)(items, 5)
    assert sorted(tuple(sorted(speakers_of(items, f.test))) for f in plan.folds) == [
        ("x",), ("y",), ("z",)
    ]  # fmt: skip
    assert plan.warnings == ["only 3 speakers (x, y, z), made 3 folds instead of 5"]
    with pytest.raises(CorpusError, match=r"^only 2 speakers \(x, y\): generated folds need 3"):
        speaker_kfold(5, 0)(items[:8], 5)


def test_classes_too_small_to_stratify_still_give_folds():
    # every class smaller than the fold count: scikit-learn refuses to stratify such labels
    items = utterances({f"s{n}": {f"class{n}": 1} for n in range(5)})
    plan = speaker_kfold(3, 0)(items, 3)
    assert sorted(len(f.test) for f in plan.folds) == [1, 2, 2]
    assert sorted(key for f in plan.folds for key in f.test) == sorted(u.key for u in items)


def test_utterance_folds_test_every_utterance_once_stratified():
    items = utterances({"one": {"a": 18, "b": 9}})
    plan = utterance_kfold(3, 0)(items, 3)
    assert Counter(key for fold in plan.folds for key in fold.test) == Counter(u.key for u in items)
    for fold in plan.folds:
        assert Counter(key.split("-")[1] for key in fold.test) == {"a": 6, "b": 3}
        assert Counter(key.split("-")[1] for key in fold.dev) == {"a": 4, "b": 2}


def test_given_folds_need_three_numbers():
    items = utterances({"x": {"a": 1}, "y": {"a": 1}})
    numbers = {"x-a-0": "1", "y-a-0": "2"}
    with pytest.raises(CorpusError, match=r"^the fold column has 2 values \(1, 2\)"):
        given_folds(numbers)(items, 2)


def test_leakage_is_measured_per_pair_and_worded_once():
    speaker_of = {"a": "s1", "b": "s1", "c": "s2", "d": "s3"}
    fold = Fold("fold1", ["a", "c"], ["d"], ["b"])
    shared = shared_speakers(fold, speaker_of)
    assert shared == {"train_test": ["s1"], "train_dev": [], "dev_test": []}
    assert speaker_leakage({"fold1": shared}, "given-split", True) == (
        "protocol given-split shares speakers across splits: 1 of 1 folds share speakers "
        "between train and test (fold1: 1, s1); test scores overstate how well a model does "
        "on speakers it has never heard"
    )
    clean = shared_speakers(Fold("f", ["c"], ["d"], ["a"]), speaker_of)
    assert speaker_leakage({"f": clean}, "paper", True) is None
    assert speaker_leakage({"f": clean}, "official", False) == (
        "protocol official is not speaker-independent: no fold shares a speaker here, but "
        "nothing keeps speakers apart; test scores overstate how well a model does on "
        "speakers it has never heard"
    )


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("iemocap", build_iemocap),
        ("crema-d", build_crema_d),
        (
            "msp-podcast",
            lambda root: build_msp_podcast(root, "labels_consensus.csv", "Development"),
        ),
        ("ravdess", build_ravdess),
        ("emodb", build_emodb),
    ],
)
def test_every_registered_corpus_passes_the_leakage_check(tmp_path, name, build):
    prepared = prepare_corpus(name, build(tmp_path / "in"), tmp_path / "out")
    assert_speaker_independent(prepared)
    assert prepared.speaker_leakage is None
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["speaker_independent"] is True and summary["speaker_leakage"] is None
    assert all(
        fold["shared_speakers"] == {"train_test": 0, "train_dev": 0, "dev_test": 0}
        for fold in summary["folds"]
    )
    assert "leakage check: no speaker in two of train, dev and test of any fold\n" in (
        (tmp_path / "out/summary.txt").read_text()
    )
    assert "speaker_leakage" not in json.loads((tmp_path / "out/folds.json").read_text())
