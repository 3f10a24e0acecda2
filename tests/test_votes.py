"""The vote rule and the manifest's vote columns."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from peft_ser.corpora.votes import annotator_votes, first_answers, in_set_weight, label_votes
from peft_ser.data.manifest import Utterance, parse_votes, read_manifest, write_manifest


def test_each_annotator_weighs_one_split_over_their_choices() -> None:
    votes = annotator_votes([["ang"], ["ang", "fru"], ["fru", "fru"], []])
    assert votes == {"ang": 1.5, "fru": 1.5}


def test_label_votes_follow_the_mapping_and_sum_the_rest_under_other() -> None:
    mapping = {"neu": "Neutral", "hap": "Happy", "exc": "Happy"}
    votes = label_votes({"hap": 1.0, "exc": 0.5, "fru": 1.5}, mapping.get, ["Neutral", "Happy"])
    assert list(votes) == ["Neutral", "Happy", "other"]
    assert votes == {"Neutral": 0.0, "Happy": 1.5, "other": 1.5}
    assert in_set_weight(votes) == 1.5


@given(st.lists(st.lists(st.sampled_from("abcde"), max_size=4), max_size=12))
def test_annotator_votes_sum_to_the_annotators_who_answered(choices: list[list[str]]) -> None:
    votes = annotator_votes(choices)
    assert math.isclose(sum(votes.values()), sum(1 for c in choices if c), abs_tol=1e-9)
    assert all(weight > 0 for weight in votes.values())


weights = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(st.dictionaries(st.text(min_size=1, max_size=8), weights, max_size=6))
def test_vote_columns_read_back_exactly(votes: dict[str, float]) -> None:
    utterance = Utterance(
        "k", "s", "F", "/a.wav", "neu", corpus="c", label="Neutral", duration=1.0,
        sample_rate=16000, channels=1, raw_votes=votes, votes=dict(votes),
    )  # fmt: skip
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "manifest.csv"
        write_manifest(path, [utterance])
        assert read_manifest(path) == [utterance]


@pytest.mark.parametrize(
    "text",
    ["[1, 2]", "{", '{"a": "x"}', '{"a": -1}', '{"a": NaN}', '{"a": Infinity}', '{"a": true}'],
)
def test_bad_vote_cells_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="votes"):
        parse_votes(text)


@given(
    st.dictionaries(st.sampled_from(["neu", "hap", "exc", "fru", "xyz"]), weights, max_size=5),
    st.sampled_from([("Neutral", "Happy"), ("Happy",), ()]),
)
def test_label_votes_keep_every_weight(raw: dict[str, float], labels: tuple[str, ...]) -> None:
    mapping = {"neu": "Neutral", "hap": "Happy", "exc": "Happy"}
    votes = label_votes(raw, mapping.get, labels)
    assert list(votes) == [*labels, "other"]
    assert math.isclose(sum(votes.values()), sum(raw.values()), rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(
        in_set_weight(votes), sum(w for c, w in raw.items() if mapping.get(c) in labels),
        rel_tol=1e-9, abs_tol=1e-9,
    )  # fmt: skip


@given(st.lists(st.tuples(st.sampled_from("pqr"), st.lists(st.sampled_from("AHSN"))), max_size=9))
def test_an_annotator_counts_once_by_their_first_answer(answers) -> None:
    first = first_answers(answers)
    assert len(first) == len({annotator for annotator, _ in answers})
    assert first == [next(c for a, c in answers if a == who) for who in dict.fromkeys(
        annotator for annotator, _ in answers
    )]  # fmt: skip
