"""A table's votes: a ``votes`` column (JSON object, in CSV, JSON Lines and Parquet) or
``votes_<label>`` columns; the expected votes are written by hand from the rows; bad cells are
malformed rows named by line and column."""

from __future__ import annotations

import json

import pytest
from _clips import FORMATS, report, tone, write_table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peft_ser.corpora import CorpusError, OwnDataOptions, prepare_table
from peft_ser.data.manifest import read_prepared
from peft_ser.utils.errors import UserError

SPEAKERS = ("s1", "s2", "s3", "s4", "s5", "s6")
LABELS = ("angry", "calm", "sad")
EXTRA = [
    # key, speaker, label, votes: a row the consensus left without a label, or with a label
    # outside the mapped set, that annotators still placed in the set
    ("s1-none", "s1", "", {"angry": 1, "calm": 2}),
    ("s2-none", "s2", "", {"surprised": 3}),  # no vote in the set: not kept
    ("s3-bored", "s3", "bored", {"SAD": 0.5, "bored": 1.5}),  # SAD is sad in another case
]


def vote_rows(root, cell=json.dumps):
    """Two clips per speaker and label, each voted 2 for its label and 1 for the next one
    (``cell`` writes the votes object as the format needs), then the `EXTRA` rows."""
    rows = []
    for speaker in SPEAKERS:
        for index, label in enumerate(LABELS):
            for take in (1, 2):
                path = tone(root / "clips" / f"{speaker}_{label}_{take}.wav")
                votes = {label: 2, LABELS[(index + 1) % 3]: 1}
                key = f"{speaker}-{label}-{take}"
                rows.append({"path": str(path), "label": label, "speaker": speaker,
                             "key": key, "votes": cell(votes)})  # fmt: skip
    for key, speaker, label, votes in EXTRA:
        path = tone(root / "clips" / f"{key}.wav")
        rows.append({"path": str(path), "label": label, "speaker": speaker, "key": key,
                     "votes": cell(votes)})  # fmt: skip
    return rows


def _options(targets="distribution"):
    """The three classes mapped, so ``bored`` is outside the set; three speaker folds."""
    return OwnDataOptions(labels="angry,calm,sad", targets=targets, folds_k=3)


@pytest.mark.parametrize("fmt", FORMATS)
def test_votes_column_in_every_format(tmp_path, fmt):
    cell = json.dumps if fmt in ("csv", "tsv") else dict
    table = write_table(tmp_path / f"t.{fmt}", vote_rows(tmp_path, cell))
    prepared = prepare_table(table, tmp_path / "out", options=_options())
    by_key = {u.key: u for u in prepared.manifest}
    assert prepared.labels == ["angry", "calm", "sad"]
    assert by_key["s4-calm-2"].raw_votes == {"calm": 2.0, "sad": 1.0}
    assert by_key["s4-calm-2"].votes == {"angry": 0.0, "calm": 2.0, "sad": 1.0, "other": 0.0}
    assert by_key["s1-none"].label == "" and by_key["s1-none"].votes == {
        "angry": 1.0, "calm": 2.0, "sad": 0.0, "other": 0.0,
    }  # fmt: skip
    assert by_key["s3-bored"].label == "" and by_key["s3-bored"].votes == {
        "angry": 0.0, "calm": 0.0, "sad": 0.5, "other": 1.5,
    }  # fmt: skip
    assert "s2-none" not in by_key
    assert report(tmp_path / "out")["s2-none"][0] == "outside_label_set"


def test_categorical_reads_the_votes_and_keeps_its_rows(tmp_path):
    table = write_table(tmp_path / "t.csv", vote_rows(tmp_path))
    categorical = prepare_table(table, tmp_path / "cat", options=_options("categorical"))
    assert len(categorical.manifest) == 36 and all(u.votes for u in categorical.manifest)
    problems = report(tmp_path / "cat")
    assert problems["s1-none"] == ("empty_label", "line 38: the label is empty")
    assert problems["s3-bored"] == ("outside_label_set", "label 'bored'")
    distribution = prepare_table(table, tmp_path / "dist", options=_options())
    labelled = read_prepared(tmp_path / "dist").labelled()
    # speaker k-fold, stratified by label: the vote-only rows decide nothing
    assert labelled.manifest == categorical.manifest and labelled.folds == categorical.folds
    assert len(distribution.manifest) == 38


def test_votes_per_class_columns(tmp_path):
    rows = [
        {k: v for k, v in row.items() if k != "votes"}
        | {"votes_angry": "", "votes_calm": "", "Votes_Sad": ""}
        for row in vote_rows(tmp_path)
    ]
    rows[0] |= {"votes_angry": "2", "votes_calm": "0.5"}  # s1-angry-1
    rows[36] |= {"votes_angry": "1", "votes_calm": "2"}  # s1-none
    table = write_table(tmp_path / "t.csv", rows)
    prepared = prepare_table(table, tmp_path / "out", options=_options("categorical"))
    by_key = {u.key: u for u in prepared.manifest}
    assert by_key["s1-angry-1"].raw_votes == {"angry": 2.0, "calm": 0.5}
    assert by_key["s1-angry-2"].raw_votes is None  # every vote cell empty
    distribution = prepare_table(table, tmp_path / "dist", options=_options())
    assert [u.key for u in distribution.manifest if u.label == ""] == ["s1-none"]


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("{", "votes '{' is not a JSON object"),
        ("[1, 2]", "votes holds [1, 2], not a JSON object of weights"),
        ('{"angry": -1}', "votes 'angry' -1 is not a finite weight of 0 or more"),
        ('{"angry": NaN}', "votes 'angry' nan is not a finite weight of 0 or more"),
        ('{"angry": true}', "votes 'angry' True is not a number"),
        ('{"angry": "2"}', "votes 'angry' '2' is not a number"),
        ('{"angry": 1e999}', "votes 'angry' inf is not a finite weight of 0 or more"),
        ("7", "votes holds 7, not a JSON object of weights"),
    ],
)
def test_a_bad_votes_cell_is_a_malformed_row_named_by_line_and_column(tmp_path, cell, problem):
    rows = vote_rows(tmp_path)
    rows[4]["votes"] = cell  # s1-sad-1, on line 6
    table = write_table(tmp_path / "t.csv", rows)
    prepare_table(table, tmp_path / "out", options=_options())
    assert report(tmp_path / "out")["s1-sad-1"] == ("malformed_label_row", f"line 6: {problem}")


@pytest.mark.parametrize(
    ("cell", "problem"),
    [("x", "votes_calm 'x' is not a number"), ("-0.5", "votes_calm -0.5 is not a finite"),
     ("nan", "votes_calm nan is not a finite"), ("inf", "votes_calm inf is not a finite")],
)  # fmt: skip
def test_a_bad_per_class_cell_is_a_malformed_row(tmp_path, cell, problem):
    rows = [{**row, "votes": None, "votes_calm": ""} for row in vote_rows(tmp_path)]
    for row in rows:
        del row["votes"]
    rows[2]["votes_calm"] = cell  # s1-calm-1
    table = write_table(tmp_path / "t.csv", rows)
    prepare_table(table, tmp_path / "out", options=_options("categorical"))
    reason, detail = report(tmp_path / "out")["s1-calm-1"]
    assert reason == "malformed_label_row" and detail.startswith(f"line 4: {problem}")


def test_both_forms_or_none_are_refused(tmp_path):
    rows = [{**row, "votes_calm": "1"} for row in vote_rows(tmp_path)]
    table = write_table(tmp_path / "both.csv", rows)
    with pytest.raises(CorpusError, match=r"both.csv: both a 'votes' column and votes_<label> "
                       r"columns \(votes_calm\); keep one form of votes"):  # fmt: skip
        prepare_table(table, tmp_path / "out", options=_options())
    plain = [{k: v for k, v in row.items() if k != "votes"} for row in vote_rows(tmp_path)]
    table = write_table(tmp_path / "plain.csv", plain)
    with pytest.raises(CorpusError, match=r"--targets distribution: .*plain.csv has no votes "
                       r"column or votes_<label> columns; its columns are \['path', 'label', "
                       r"'speaker', 'key'\]: map one with --columns votes=<column>"):  # fmt: skip
        prepare_table(table, tmp_path / "out", options=_options())
    assert not (tmp_path / "out").exists()


def test_votes_column_mapped_by_name(tmp_path):
    rows = [{("ratings" if k == "votes" else k): v for k, v in row.items()}
            for row in vote_rows(tmp_path)]  # fmt: skip
    table = write_table(tmp_path / "t.csv", rows)
    prepared = prepare_table(
        table, tmp_path / "out", columns={"votes": "ratings"}, options=_options()
    )
    assert sum(u.label == "" for u in prepared.manifest) == 2


def test_a_folder_corpus_has_no_votes(tmp_path):
    from peft_ser.corpora import prepare_folder

    tone(tmp_path / "data/calm/a.wav")
    with pytest.raises(CorpusError, match="--targets distribution: the folder layout has no "
                       "annotator votes"):  # fmt: skip
        prepare_folder(tmp_path / "data", tmp_path / "out", options=_options())


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("vote-clips")
    return [tone(folder / f"c{index}.wav", hz=200 + 10 * index) for index in range(20)]


@pytest.mark.slow
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(1, 6),  # speaker
            st.sampled_from(["angry", "calm", "sad", ""]),  # "" : the consensus is missing
            st.dictionaries(
                st.sampled_from(["angry", "calm", "sad", "bored"]), st.integers(0, 3), max_size=3
            ),
        ),
        min_size=6,
        max_size=20,
    ),
    split_by=st.sampled_from(["speaker", "utterance"]),
)
def test_the_labelled_view_is_the_categorical_preparation_of_any_table(
    clips, tmp_path_factory, rows, split_by
):
    folder = tmp_path_factory.mktemp("random-votes")
    table = write_table(folder / "t.csv", [
        {"path": str(clips[i]), "label": label, "speaker": f"s{speaker}",
         "votes": json.dumps(votes)}
        for i, (speaker, label, votes) in enumerate(rows)
    ])  # fmt: skip
    results = []
    for targets in ("categorical", "distribution"):
        options = OwnDataOptions(targets=targets, folds_k=3, split_by=split_by)
        try:
            results.append(prepare_table(table, folder / targets, options=options))
        except UserError as error:
            results.append(str(error))
    categorical, distribution = results
    if isinstance(categorical, str):
        # a corpus too small for categorical folds stays too small: its vote-only rows
        # decide no fold
        assert isinstance(distribution, str)
        return
    assert not isinstance(distribution, str), distribution
    labelled = read_prepared(folder / "distribution").labelled()
    assert labelled.manifest == categorical.manifest
    assert labelled.folds == categorical.folds and labelled.labels == categorical.labels
    for u in distribution.manifest:
        if u.label == "":
            assert u.votes is not None and sum(u.votes.values()) > u.votes["other"]
