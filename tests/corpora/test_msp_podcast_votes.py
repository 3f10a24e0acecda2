"""MSP-Podcast's per-annotator labels: votes counted from every layout a release may ship, the
rows and files that cannot be read, and the votes in a prepared manifest."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from _podcast_detailed import (
    DETAILED_JSON,
    DETAILED_PACKED,
    DETAILED_ROWS,
    DETAILED_WORKERS,
    EXPECTED_VOTES,
    build_release,
)

from peft_ser.corpora import msp_podcast_votes, prepare_corpus
from peft_ser.corpora.msp_podcast import scan
from peft_ser.corpora.msp_podcast_votes import primary_code
from peft_ser.data.manifest import read_manifest

LAYOUTS = {
    "per-annotation csv": {"labels_detailed.csv": DETAILED_ROWS},
    "EmoDetail csv": {"labels_detailed.csv": DETAILED_PACKED},
    "json by rater": {"labels_detailed.json": DETAILED_JSON},
    "json Workers list": {"labels_detailed.json": DETAILED_WORKERS},
    "csv before json": {"labels_detailed.csv": DETAILED_ROWS, "labels_detailed.json": "[]"},
}


def _votes(corpus: Path) -> tuple[dict[str, dict[str, float] | None], list[str]]:
    found = scan(corpus)
    return {e.key: e.raw_votes for e in found.entries}, [p.detail for p in found.problems]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_gives_the_votes_counted_by_hand(tmp_path: Path, layout: str) -> None:
    votes, problems = _votes(build_release(tmp_path, LAYOUTS[layout]))
    assert votes == EXPECTED_VOTES
    assert problems == []


def test_without_a_detailed_file_there_are_no_votes_and_no_error(tmp_path: Path) -> None:
    votes, problems = _votes(build_release(tmp_path))
    assert set(votes.values()) == {None} and problems == []


def test_secondary_choices_are_not_votes(tmp_path: Path) -> None:
    """A rater's secondary list never adds weight: each rater weighs 1 on the primary."""
    rows = 'FileName,EmoClass_Major,EmoClass_Second\nMSP-PODCAST_0104_0001.wav,Sad,"Sad,Angry"\n'
    votes, _ = _votes(build_release(tmp_path, {"labels_detailed.csv": rows}))
    assert votes["MSP-PODCAST_0104_0001"] == {"S": 1.0}


@pytest.mark.parametrize(
    ("word", "code"),
    [("Angry", "A"), ("anger", "A"), ("SAD", "S"), ("Happy", "H"), ("Surprised", "U"),
     ("Fear", "F"), ("Disgust", "D"), ("Contempt", "C"), ("Neutral", "N"), (" Other ", "O"),
     ("Other-Concerned", "O"), ("Other - annoyed", "O"), ("N", "N"), ("o", "O"),
     ("Bored", None), ("", None), ("X", None), ("Frustrated", None)],
)  # fmt: skip
def test_primary_words_map_to_the_corpus_codes(word: str, code: str | None) -> None:
    assert primary_code(word) == code


UNCLOSED = 'FileName,EmoClass_Major\nMSP-PODCAST_0101_0001.wav,"' + "x" * 2**18
"""A quote never closed: the field runs past the csv module's limit."""

DAMAGED = DETAILED_ROWS + (
    ",WORKER00030,Angry,,4,4,4\n"
    "MSP-PODCAST_0104_0001.wav,WORKER00031,,,4,4,4\n"
    "MSP-PODCAST_0104_0001.wav,WORKER00032,Bored,Bored,4,4,4\n"
    "MSP-PODCAST_0104_0001.wav,WORKER00033\n"
    "MSP-PODCAST_0104_0001.wav,WORKER00034,Sad,,4,4,4,surplus\n"
    "MSP-PODCAST_0104_0001.wav,WORKER00035,Sad,,2,2,3\n"
)


def test_each_damaged_row_is_one_problem_naming_file_and_line(tmp_path: Path) -> None:
    corpus = build_release(tmp_path, {"labels_detailed.csv": DAMAGED})
    found = scan(corpus)
    votes = {e.key: e.raw_votes for e in found.entries}
    assert votes == {**EXPECTED_VOTES, "MSP-PODCAST_0104_0001": {"S": 1.0}}
    details = [(p.key, p.reason, p.detail) for p in found.problems]
    assert details == [
        ("", "malformed_label_row",
         "labels_detailed.csv line 32: no FileName; this vote is left out"),
        ("MSP-PODCAST_0104_0001", "malformed_label_row",
         "labels_detailed.csv line 33: no primary emotion (EmoClass_Major); this vote is left out"),
        ("MSP-PODCAST_0104_0001", "malformed_label_row",
         "labels_detailed.csv line 34: primary emotion 'Bored' is not one the corpus uses; "
         "this vote is left out"),
        ("MSP-PODCAST_0104_0001", "malformed_label_row",
         "labels_detailed.csv line 35: not as many fields as the header; this vote is left out"),
        ("MSP-PODCAST_0104_0001", "malformed_label_row",
         "labels_detailed.csv line 36: not as many fields as the header; this vote is left out"),
    ]  # fmt: skip
    assert {p.path for p in found.problems} == {str(corpus / "Labels" / "labels_detailed.csv")}


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("labels_detailed.csv", "FileName,EmoAct\nMSP-PODCAST_0101_0001.wav,4\n",
         "labels_detailed.csv has no FileName with EmoClass_Major or EmoDetail column "
         "(header ['FileName', 'EmoAct']); no votes"),
        ("labels_detailed.csv", "",
         "labels_detailed.csv has no FileName with EmoClass_Major or EmoDetail column "
         "(header []); no votes"),
        ("labels_detailed.csv", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe",
         "labels_detailed.csv is not UTF-8 text; no votes"),
        ("labels_detailed.csv", UNCLOSED,
         "labels_detailed.csv is not CSV (field larger than field limit (131072)); no votes"),
        ("labels_detailed.json", '{"MSP-PODCAST_0101_0001.wav": {"W1": {"EmoClass_Major": "Ang',
         "labels_detailed.json is not JSON (Unterminated string starting at: line 1 column 57 "
         "(char 56)); no votes"),
        ("labels_detailed.json", '["MSP-PODCAST_0101_0001.wav"]',
         "labels_detailed.json is not a JSON object of file names; no votes"),
    ],
)  # fmt: skip
def test_a_file_that_cannot_be_read_is_one_problem_and_no_votes(
    tmp_path: Path, name: str, content: str | bytes, problem: str
) -> None:
    votes, problems = _votes(build_release(tmp_path, {name: content}))
    assert set(votes.values()) == {None}
    assert problems == [problem]


def test_damaged_json_answers_are_named_by_file_and_rater(tmp_path: Path) -> None:
    content = (
        '{"MSP-PODCAST_0104_0001.wav": {"W1": {"EmoClass_Major": "Sad"}, "W2": {"EmoAct": "4"},'
        ' "W3": "Sad", "W4": {"EmoClass_Major": 3}},'
        ' "MSP-PODCAST_0103_0001.wav": {"Workers": [{"Name": "W5", "EmoClass_Major": "Happy"},'
        ' {"EmoClass_Major": "Calm"}]}, "MSP-PODCAST_0102_0001.wav": 7}'
    )
    votes, problems = _votes(build_release(tmp_path, {"labels_detailed.json": content}))
    assert votes["MSP-PODCAST_0104_0001"] == {"S": 1.0}
    assert votes["MSP-PODCAST_0103_0001"] == {"H": 1.0}
    unread = "no EmoClass_Major text; this vote is left out"
    assert problems == [
        f"labels_detailed.json 'MSP-PODCAST_0104_0001.wav' rater W2: {unread}",
        f"labels_detailed.json 'MSP-PODCAST_0104_0001.wav' rater W3: {unread}",
        f"labels_detailed.json 'MSP-PODCAST_0104_0001.wav' rater W4: {unread}",
        "labels_detailed.json 'MSP-PODCAST_0103_0001.wav' rater #2: primary emotion 'Calm' is "
        "not one the corpus uses; this vote is left out",
        f"labels_detailed.json 'MSP-PODCAST_0102_0001.wav' rater ?: {unread}",
    ]


def test_an_unreadable_detailed_file_is_reported_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = build_release(tmp_path, {"labels_detailed.csv": DETAILED_ROWS})

    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(msp_podcast_votes, "open", refused, raising=False)
    votes, problems = _votes(corpus)
    assert set(votes.values()) == {None}
    assert problems == ["labels_detailed.csv cannot be read (Permission denied); no votes"]


def test_prepared_manifest_keeps_the_votes_and_the_report_the_bad_rows(tmp_path: Path) -> None:
    corpus = build_release(tmp_path / "in", {"labels_detailed.csv": DAMAGED})
    out = tmp_path / "out"
    prepared = prepare_corpus("msp-podcast", corpus, out, labels="challenge8")
    by_key = {u.key: u for u in read_manifest(out / "manifest.csv")}
    assert by_key["MSP-PODCAST_0101_0001"].raw_votes == {"A": 3.0, "C": 1.0, "O": 1.0}
    assert by_key["MSP-PODCAST_0104_0001"].raw_votes == {"S": 1.0}
    assert {u.key: u.raw_votes for u in prepared.manifest} == {
        key: EXPECTED_VOTES[key] if key != "MSP-PODCAST_0104_0001" else {"S": 1.0} for key in by_key
    }
    with open(out / "report.csv", newline="") as handle:
        reasons = [row["reason"] for row in csv.DictReader(handle)]
    assert reasons.count("malformed_label_row") == 5


def test_distribution_targets_keep_the_no_agreement_segment_with_its_votes(tmp_path: Path) -> None:
    """0101_0002's consensus is X (no agreement); its raters chose H, N, S and U once each."""
    corpus = build_release(tmp_path / "in", {"labels_detailed.csv": DETAILED_ROWS})
    categorical = prepare_corpus("msp-podcast", corpus, tmp_path / "hard", labels="challenge8")
    assert "MSP-PODCAST_0101_0002" not in {u.key for u in categorical.manifest}
    prepared = prepare_corpus(
        "msp-podcast", corpus, tmp_path / "soft", labels="challenge8", targets="distribution"
    )
    kept = {u.key: u for u in prepared.manifest}["MSP-PODCAST_0101_0002"]
    assert kept.label == "" and kept.raw_label == "X"
    assert kept.votes is not None
    assert {name: weight for name, weight in kept.votes.items() if weight} == {
        "Sad": 1.0, "Happy": 1.0, "Surprise": 1.0, "Neutral": 1.0,
    }  # fmt: skip
