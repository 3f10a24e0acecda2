"""Every utterance's votes, counted by hand from the fixture lines of `_vote_layouts`.

The expected values below are written from the lines themselves by the rule (each annotator
weighs 1, split over the distinct categories they chose; self-evaluations, the other query
types and repeated annotators do not count), never computed by the code under test.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from _vote_layouts import build_crema_d_votes, build_iemocap_votes, build_msp_improv_votes
from hypothesis import given, settings
from hypothesis import strategies as st

from peft_ser.corpora import crema_d, iemocap, msp_improv
from peft_ser.corpora.base import Scan

IEMOCAP_RAW = {
    # C-E1 Neutral, C-E2 Neutral, C-E3 Neutral + Frustration; C-F1 Anger is the speaker's own
    "Ses01F_impro01_F000": {"neu": 2.5, "fru": 0.5},
    # C-E1 Anger, C-E2 Frustration (comment with a comma), C-E4 Sadness; C-M1 is the speaker
    "Ses01F_impro01_M000": {"ang": 1.0, "fru": 1.0, "sad": 1.0},
    # C-E2 Excited, C-E3 Happiness + Excited, C-E4 Excited twice (one distinct category)
    "Ses01F_impro01_F001": {"exc": 2.5, "hap": 0.5},
    "Ses01F_impro01_M001": {"fru": 1.0, "oth": 1.0, "sur": 1.0},
    "Ses01F_impro01_F002": {"oth": 1.0, "ang": 1.0},
    # C-E1 chose nothing, C-E2 an unknown word (kept as written), C-E3 Sadness with a comment
    # holding a semicolon
    "Ses01F_impro01_M002": {"Nervousness": 1.0, "sad": 1.0},
    # C-E2 Neutral; the malformed "C-Ex" line counts nothing; C-E2's second answer neither
    "Ses01F_impro01_F003": {"neu": 1.0},
    "Ses01F_impro01_M003": None,  # only a self-evaluation
    "Ses02F_impro01_F000": {"neu": 2.0},  # Neutral, NEUTRAL
    "Ses02F_impro01_M000": {"ang": 1.0},
    "Ses02F_impro01_F001": {"hap": 1.0, "sad": 1.0},
    "Ses03F_impro01_F000": {"sad": 1.0},
    "Ses03F_impro01_M000": {"hap": 1.0},
    "Ses03F_impro01_F001": {"neu": 1.0},
}

MSP_RAW = {
    # p001 Angry, p002 Angry, p003 Neutral; p001's copied line counts once
    "MSP-IMPROV-S01A-F01-P-FM01": {"A": 2.0, "N": 1.0},
    "MSP-IMPROV-S01X-M01-R-MF01": {"H": 1.0, "S": 1.0, "O": 1.0},
    "MSP-IMPROV-S02O-F02-S-FM02": {"O": 1.0, "Bored": 1.0},
    # p008 "neutral" in lower case; p009 chose nothing; two unreadable lines count nothing
    "MSP-IMPROV-S02N-M02-T-MF02": {"N": 1.0},
    "MSP-IMPROV-S03H-F03-P-FM03": {"H": 1.0},
    "MSP-IMPROV-S03S-M03-R-MF03": None,  # a block without rater lines
}

CREMA_RAW = {
    # audio-visual rows only: r01 A, r02 A, r03 D; r04 (voice), r05 (face) and r01's second
    # answer do not count
    "1001_DFA_ANG_XX": {"A": 2.0, "D": 1.0},
    "1001_DFA_NEU_XX": None,
    "1002_IEO_HAP_HI": None,
    "1002_TIE_SAD_XX": {"N": 1.0, "S": 1.0},  # r03 chose nothing
    "1003_IWW_FEA_XX": {"F": 1.0, "Z": 1.0},  # an unknown letter is kept as written
    "1003_ITS_SAD_XX": None,
    "1004_DFA_NEU_XX": None,
    "1004_ITH_DIS_XX": {"D": 1.0, "F": 1.0},  # r06's queryType "x" counts nothing
    "1005_DFA_HAP_XX": None,  # a voice-only response
}


def _raw(scan: Scan) -> dict[str, dict[str, float] | None]:
    return {entry.key: entry.raw_votes for entry in scan.entries}


def test_iemocap_votes_are_the_external_evaluators(tmp_path):
    scan = iemocap.scan(build_iemocap_votes(tmp_path))
    assert _raw(scan) == IEMOCAP_RAW
    assert not scan.problems
    (note,) = scan.notes
    assert note.startswith("2 IEMOCAP evaluator lines (not C-E<n>: …, or of no turn) could not")
    assert "Ses01F_impro01.txt line 3: 'C-E9:\\tAnger;\\t()'" in note
    assert "'C-Ex Neutral;'" in note


def test_msp_improv_votes_are_the_raters_primary_emotions(tmp_path):
    scan = msp_improv.scan(build_msp_improv_votes(tmp_path))
    assert _raw(scan) == MSP_RAW
    assert [entry.raw_label for entry in scan.entries] == ["A", "X", "O", "N", "H", "S"]
    (note,) = scan.notes
    assert note.startswith("2 MSP-IMPROV rater lines")
    assert "'a line without a rater field'" in note and "MF09.avi" in note


def test_crema_d_votes_are_the_audio_visual_responses(tmp_path):
    scan = crema_d.scan(build_crema_d_votes(tmp_path))
    assert _raw(scan) == CREMA_RAW
    (note,) = scan.notes
    assert note.startswith("2 CREMA-D response rows")
    assert "row 12: clipName '1004_ITH_DIS_XX', localid 'r06', queryType 'x'" in note
    assert "row 13: clipName ''" in note


def test_crema_d_without_responses_has_no_votes(tmp_path):
    scan = crema_d.scan(build_crema_d_votes(tmp_path, responses=False))
    assert all(entry.raw_votes is None for entry in scan.entries) and not scan.notes


@pytest.mark.parametrize(
    ("content", "warning"),
    [
        ('"","localid","clipName"\n"1","r01","1001_DFA_ANG_XX"\n', "missing columns"),
        (b"\xff\xfe\x00junk", "not UTF-8 text: invalid start byte at byte 0"),
        ("", "missing columns"),
    ],
)
def test_a_damaged_responses_file_gives_no_votes_and_one_warning(tmp_path, content, warning):
    corpus = build_crema_d_votes(tmp_path)
    path = corpus / "finishedResponses.csv"
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    scan = crema_d.scan(corpus)
    assert all(entry.raw_votes is None for entry in scan.entries)
    (note,) = scan.notes
    assert note.startswith(f"{path}: no votes read (") and warning in note
    assert len(scan.entries) == 9  # the labels are read as before


def test_a_short_response_row_counts_as_unread(tmp_path):
    corpus = build_crema_d_votes(tmp_path)
    path = corpus / "finishedResponses.csv"
    path.write_text(path.read_text() + '"99","r11"\n')
    (note,) = crema_d.scan(corpus).notes
    assert note.startswith("3 CREMA-D response rows") and "row 17: clipName ''" in note


def test_iemocap_evaluator_lines_after_a_malformed_turn_count_for_no_turn(tmp_path):
    corpus = build_iemocap_votes(tmp_path)
    path = corpus / "Session3/dialog/EmoEvaluation/Ses03F_impro01.txt"
    text = path.read_text().replace("Ses03F_impro01_M000", "not-a-turn")
    path.write_text(text)
    scan = iemocap.scan(corpus)
    assert [p.key for p in scan.problems] == ["not-a-turn"]
    assert "Ses03F_impro01.txt line " in scan.notes[0] and scan.notes[0].startswith("3 ")
    assert _raw(scan)["Ses03F_impro01_F001"] == {"neu": 1.0}  # the next turn is its own


WORDS = {
    "Neutral": "neu", "Happiness": "hap", "Excited": "exc", "Sadness": "sad", "Anger": "ang",
    "Frustration": "fru", "Surprise": "sur", "Fear": "fea", "Disgust": "dis", "Other": "oth",
}  # fmt: skip
word = st.sampled_from([*WORDS, "Bored", "anger"])
answer = st.tuples(st.integers(1, 4), st.lists(word, max_size=3))
"""An evaluator number and the words of one ``C-E`` line (possibly none, possibly repeated)."""


def _expected(answers: list[tuple[int, list[str]]]) -> dict[str, float] | None:
    """The rule, written out for the test: first answer per evaluator, 1 over distinct codes."""
    if not answers:
        return None
    first: dict[int, list[str]] = {}
    for evaluator, words in answers:
        first.setdefault(evaluator, words)
    votes: dict[str, float] = {}
    for words in first.values():
        codes = list(dict.fromkeys(WORDS.get(w, "ang" if w == "anger" else w) for w in words))
        for code in codes:
            votes[code] = votes.get(code, 0.0) + 1 / len(codes)
    return votes


@settings(max_examples=40, deadline=None)
@given(
    turns=st.lists(
        st.tuples(st.lists(answer, max_size=5), st.lists(word, max_size=2)), min_size=1, max_size=4
    )
)
def test_iemocap_votes_of_random_blocks(turns) -> None:
    with tempfile.TemporaryDirectory() as folder:
        evaluation = Path(folder) / "Session1/dialog/EmoEvaluation"
        evaluation.mkdir(parents=True)
        text = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        for index, (answers, self_words) in enumerate(turns):
            text += f"[1.0 - 2.0]\tSes01F_impro01_F{index:03d}\txxx\t[2.5, 2.5, 2.5]\n"
            for evaluator, words in answers:
                text += f"C-E{evaluator}:\t{''.join(w + '; ' for w in words)}\t(a; b)\n"
            text += f"C-F1:\t{''.join(w + '; ' for w in self_words)}\t()\n\n"
        (evaluation / "Ses01F_impro01.txt").write_text(text)
        scan = iemocap.scan(Path(folder))
    assert [entry.raw_votes for entry in scan.entries] == [_expected(a) for a, _ in turns]
    assert not scan.notes


PRIMARY = {"Angry": "A", "Happy": "H", "Sad": "S", "Neutral": "N", "Other": "O", "sad": "S"}


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["p01", "p02", "p-03", "q_4"]), st.sampled_from([*PRIMARY, "Bored", ""])
        ),
        max_size=6,
    )
)
def test_msp_improv_votes_of_random_rater_lines(raters) -> None:
    with tempfile.TemporaryDirectory() as folder:
        lines = [f"{rater}; {emotion}; Calm,Tired; A:3.0; V:3.0; D:3.0; N:4.0;"
                 for rater, emotion in raters]  # fmt: skip
        block = "\n".join(["UTD-IMPROV-S01A-F01-P-FM01.avi; A; A:3.0; V:3.0; D:3.0 ; N:4;", *lines])
        (Path(folder) / "Evalution.txt").write_text(block + "\n")
        (entry,) = msp_improv.scan(Path(folder)).entries
    first: dict[str, str] = {}
    for rater, emotion in raters:
        first.setdefault(rater, emotion)
    expected: dict[str, float] = {}
    for emotion in first.values():
        if emotion:
            code = PRIMARY.get(emotion, emotion)
            expected[code] = expected.get(code, 0.0) + 1.0
    assert entry.raw_votes == (expected if raters else None)
