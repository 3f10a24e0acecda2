"""``prepare --targets distribution``: the votes in the label space, the no-agreement and other
utterances kept for their votes alone, and a categorical view of the folder that is exactly
the categorical preparation.

The fixtures are those of `_vote_layouts`; `test_vote_parsers` checks their raw votes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from _layouts import build_emodb, report_counts
from _vote_layouts import build_crema_d_votes, build_iemocap_votes, build_msp_improv_votes

from peft_ser.corpora import CorpusError, load_prepared, prepare_corpus
from peft_ser.data.manifest import PreparedCorpusError

KEPT_FOR_VOTES = [
    "Ses01F_impro01_M000",  # xxx; Anger, Frustration, Sadness
    "Ses01F_impro01_F002",  # oth; Other, Anger
    "Ses01F_impro01_M002",  # xxx; nothing, Nervousness, Sadness
    "Ses02F_impro01_F001",  # xxx; Happiness, Sadness
]


@pytest.fixture(scope="module")
def iemocap(tmp_path_factory: pytest.TempPathFactory):
    return build_iemocap_votes(tmp_path_factory.mktemp("iemocap-votes"))


def _votes(prepared):
    return {u.key: u.votes for u in prepared.manifest}


def test_distribution_keeps_no_agreement_turns_with_in_set_votes(iemocap, tmp_path):
    prepared = prepare_corpus("iemocap", iemocap, tmp_path, targets="distribution")
    assert [u.key for u in prepared.manifest if u.label == ""] == KEPT_FOR_VOTES
    assert {u.key: u.raw_label for u in prepared.manifest if u.label == ""} == {
        "Ses01F_impro01_M000": "xxx",
        "Ses01F_impro01_F002": "oth",
        "Ses01F_impro01_M002": "xxx",
        "Ses02F_impro01_F001": "xxx",
    }
    votes = _votes(prepared)
    # the paper's four classes, exc counted as Happy, the rest under "other"
    assert votes["Ses01F_impro01_M000"] == {
        "Neutral": 0.0, "Angry": 1.0, "Sad": 1.0, "Happy": 0.0, "other": 1.0,
    }  # fmt: skip
    assert list(votes["Ses01F_impro01_M000"]) == ["Neutral", "Angry", "Sad", "Happy", "other"]
    assert votes["Ses01F_impro01_F001"] == {
        "Neutral": 0.0, "Angry": 0.0, "Sad": 0.0, "Happy": 3.0, "other": 0.0,
    }  # fmt: skip
    assert votes["Ses01F_impro01_M002"]["other"] == 1.0  # Nervousness
    assert votes["Ses01F_impro01_F000"]["other"] == 0.5  # Frustration
    # xxx turns whose votes are all outside the set, or that have none, stay excluded
    assert report_counts(tmp_path) == {"no_agreement": 2}
    assert prepared.targets == "distribution" and prepared.attributes == ()
    assert json.loads((tmp_path / "targets.json").read_text())["targets"] == "distribution"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["votes"] == {"utterances": 12, "kept_for_votes": 4}
    assert summary["total"]["utterances"] == 12 and summary["total"]["votes_only"] == 4
    assert sum(summary["total"]["per_label"].values()) == 8
    text = (tmp_path / "summary.txt").read_text()
    assert (
        "votes: 12 utterances carry annotator votes; 4 of them kept for their votes alone "
        "(consensus outside the label set, no class label)\n"
    ) in text
    assert "IEMOCAP evaluator lines" in " ".join(summary["warnings"])
    assert load_prepared(tmp_path) == prepared


def test_categorical_keeps_its_utterances_and_writes_the_votes(iemocap, tmp_path):
    categorical = prepare_corpus("iemocap", iemocap, tmp_path / "cat")
    assert len(categorical.manifest) == 8 and all(u.label for u in categorical.manifest)
    assert report_counts(tmp_path / "cat") == {"no_agreement": 5, "outside_label_set": 1}
    assert _votes(categorical)["Ses02F_impro01_F000"] == {
        "Neutral": 2.0, "Angry": 0.0, "Sad": 0.0, "Happy": 0.0, "other": 0.0,
    }  # fmt: skip
    summary = json.loads((tmp_path / "cat/summary.json").read_text())
    assert summary["votes"] == {"utterances": 8, "kept_for_votes": 0}
    assert (
        "votes: 8 utterances carry annotator votes\n" in (tmp_path / "cat/summary.txt").read_text()
    )
    assert not (tmp_path / "cat/targets.json").exists()


@pytest.mark.parametrize("protocol", ["paper", "loso-speaker-dev", "improvised"])
def test_the_labelled_view_of_a_distribution_folder_is_the_categorical_preparation(
    iemocap, tmp_path, protocol
):
    categorical = prepare_corpus("iemocap", iemocap, tmp_path / "cat", protocol=protocol)
    distribution = prepare_corpus(
        "iemocap", iemocap, tmp_path / "dist", protocol=protocol, targets="distribution"
    )
    labelled = load_prepared(tmp_path / "dist").labelled()
    assert labelled.manifest == categorical.manifest
    assert labelled.folds == categorical.folds
    assert labelled.labels == categorical.labels
    assert categorical.labelled() is categorical
    # a vote-only turn joins the split of its session (its speaker, under loso-speaker-dev),
    # and no fold where that group has no labelled turn: Ses01M has none
    group = {u.key: (u.speaker if protocol == "loso-speaker-dev" else u.session)
             for u in distribution.manifest}  # fmt: skip
    placed = set()
    for fold in distribution.folds:
        for split in ("train", "dev", "test"):
            keys = getattr(fold, split)
            assert {group[k] for k in keys} == {group[k] for k in keys if k not in KEPT_FOR_VOTES}
            placed |= set(keys) & set(KEPT_FOR_VOTES)
    unplaced = {"Ses01F_impro01_M000", "Ses01F_impro01_M002"}
    assert placed == set(KEPT_FOR_VOTES) - (unplaced if protocol == "loso-speaker-dev" else set())


def test_full_label_set_counts_every_class(iemocap, tmp_path):
    prepared = prepare_corpus("iemocap", iemocap, tmp_path, labels="full", targets="distribution")
    votes = _votes(prepared)
    assert (
        votes["Ses01F_impro01_F001"]["Happy"] == 0.5
        and votes["Ses01F_impro01_F001"]["Excited"] == 2.5
    )
    # every xxx turn with a vote for a class of the full set is kept, oth only for other ones
    assert [u.key for u in prepared.manifest if u.label == ""] == [
        "Ses01F_impro01_M000", "Ses01F_impro01_M001", "Ses01F_impro01_F002",
        "Ses01F_impro01_M002", "Ses02F_impro01_F001",
    ]  # fmt: skip
    assert votes["Ses01F_impro01_M001"]["other"] == 1.0  # Other
    assert set(votes["Ses01F_impro01_M001"]) == {*prepared.labels, "other"}


def test_msp_improv_keeps_x_with_in_set_votes_not_o_without(tmp_path):
    corpus = build_msp_improv_votes(tmp_path)
    prepared = prepare_corpus("msp-improv", corpus, tmp_path / "out", targets="distribution")
    vote_only = {u.key: u.votes for u in prepared.manifest if u.label == ""}
    assert vote_only == {
        "MSP-IMPROV-S01X-M01-R-MF01": {
            "Neutral": 0.0, "Angry": 0.0, "Sad": 1.0, "Happy": 1.0, "other": 1.0,
        }
    }  # fmt: skip
    assert report_counts(tmp_path / "out") == {"outside_label_set": 1}  # O: Other, Bored
    by_key = {u.key: u for u in prepared.manifest}
    assert by_key["MSP-IMPROV-S03S-M03-R-MF03"].votes is None  # no rater lines
    assert by_key["MSP-IMPROV-S03S-M03-R-MF03"].label == "Sad"


def test_crema_d_keeps_a_tie_with_in_set_votes(tmp_path):
    corpus = build_crema_d_votes(tmp_path)
    prepared = prepare_corpus("crema-d", corpus, tmp_path / "out", targets="distribution")
    assert {u.key: u.votes for u in prepared.manifest if u.label == ""} == {
        "1002_TIE_SAD_XX": {"Neutral": 1.0, "Angry": 0.0, "Sad": 1.0, "Happy": 0.0, "other": 0.0}
    }
    # D:F is a tie of classes outside the paper's four; F is outside them
    assert report_counts(tmp_path / "out") == {"no_agreement": 1, "outside_label_set": 1}
    categorical = prepare_corpus("crema-d", corpus, tmp_path / "cat")
    assert load_prepared(tmp_path / "out").labelled().folds == categorical.folds


def test_distribution_needs_a_corpus_with_votes(tmp_path):
    with pytest.raises(CorpusError) as refused:
        prepare_corpus(
            "emodb", build_emodb(tmp_path / "emodb"), tmp_path / "o", targets="distribution"
        )
    assert str(refused.value) == (
        "--targets distribution: EmoDB ships no per-annotator labels to count votes from; use "
        "--targets categorical"
    )
    corpus = build_crema_d_votes(tmp_path / "crema", responses=False)
    with pytest.raises(
        CorpusError,
        match=r"no label row of CREMA-D under .* carries annotator "
        r"votes \(read from the audio-visual responses of finishedResponses.csv\)",
    ):
        prepare_corpus("crema-d", corpus, tmp_path / "o", targets="distribution")
    assert not (tmp_path / "o").exists()


def test_a_folder_whose_files_disagree_on_vote_only_utterances_is_refused(iemocap, tmp_path):
    prepare_corpus("iemocap", iemocap, tmp_path, targets="distribution")
    targets = tmp_path / "targets.json"
    targets.unlink()  # now it reads as a categorical folder holding unlabelled utterances
    with pytest.raises(
        PreparedCorpusError,
        match=r"manifest.csv: 4 utterances have no label "
        r"\(first \['Ses01F_impro01_M000'",
    ):
        load_prepared(tmp_path)


def test_votes_naming_a_label_outside_labels_json_are_refused(iemocap, tmp_path):
    prepare_corpus("iemocap", iemocap, tmp_path, targets="distribution")
    (tmp_path / "labels.json").write_text('["Neutral", "Angry", "Sad", "Joy"]\n')
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(manifest.read_text().replace('"Happy"', '"Joy"', 1))
    with pytest.raises(
        PreparedCorpusError,
        match=r"the votes of .* name \['Happy'\], not in "
        r"labels.json",
    ):
        load_prepared(tmp_path)


def test_vote_only_utterance_with_no_in_set_vote_is_refused(iemocap, tmp_path):
    prepared = prepare_corpus("iemocap", iemocap, tmp_path, targets="distribution")
    first = prepared.manifest.index(next(u for u in prepared.manifest if u.label == ""))
    emptied = replace(prepared.manifest[first], votes={"Neutral": 0.0, "other": 2.0})
    from peft_ser.data.manifest import write_manifest

    write_manifest(tmp_path / "manifest.csv", [*prepared.manifest[:first], emptied,
                                               *prepared.manifest[first + 1:]])  # fmt: skip
    with pytest.raises(PreparedCorpusError, match="1 utterances have no label"):
        load_prepared(tmp_path)


def test_cli_refuses_distribution_targets_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from peft_ser.cli import app

    emodb = build_emodb(tmp_path / "emodb")
    result = CliRunner().invoke(
        app, ["prepare", "emodb", "--root", str(emodb), "--targets", "distribution"]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --targets distribution: EmoDB ships no per-annotator labels to count votes "
        "from; use --targets categorical"
    ]


@pytest.mark.parametrize(
    "document",
    [
        '{"targets": "distribution", "attributes": ["arousal"], "scale": "1-5"}',
        '{"targets": "votes", "attributes": []}',
    ],
)
def test_a_damaged_targets_file_is_refused(iemocap, tmp_path, document):
    prepare_corpus("iemocap", iemocap, tmp_path, targets="distribution")
    (tmp_path / "targets.json").write_text(document)
    with pytest.raises(PreparedCorpusError, match=r"targets\.json: "):
        load_prepared(tmp_path)
