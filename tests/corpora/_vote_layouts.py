"""Stand-ins of the corpora's per-annotator label files, written line for line as the real ones.

Sources of each format fact (the same the parsers cite):

* IEMOCAP ``EmoEvaluation/<dialog>.txt``: a turn block is the summary line
  ``[start - end]<TAB>turn<TAB>code<TAB>[V, A, D]``, then ``C-E<n>:<TAB>Word;<TAB>()`` lines of
  external evaluators (several words each ending in ``;``), ``C-F1``/``C-M1`` self-evaluations
  and ``A-E<n>:<TAB>val 3; act 2; dom  2;<TAB>()`` dimensional lines, then a blank line:
  CXianRen/AMST ``Doc/dataset/IEMOCAP.md`` (its label example) and W-Wu/ERC-SLT22
  ``Data preparation/data_prep_process_label.py`` (reads ``C-E`` lines only; the words Neutral,
  Happiness, Excited, Sadness, Anger). The comment in parentheses may hold text
  (``(threatening, belligerent)`` in the AMST example).
* MSP-IMPROV ``Evalution.txt``: blocks separated by a blank line; the consensus line
  ``UTD-IMPROV-<id>.avi; N; A:x; V:x; D:x ; N:x;`` then one line per rater,
  ``<rater>; <Sad|Angry|Happy|Neutral|Other>; <other emotions>; A:x; V:x; D:x; N:x;``, some
  (clip, rater) pairs listed twice: Strong-AI-Lab/emotion ``datasets/MSP-IMPROV/process.py``.
* CREMA-D ``finishedResponses.csv``: written by R, a first unnamed column of row numbers, then
  localid, pos, ans, ttr, queryType (1 voice, 2 face, 3 audio-visual), numTries, clipNum,
  questNum, subType, clipName, sessionNums, respEmo (A D F H N S), respLevel, dispEmo, dispVal,
  dispLevel: CheyneyComputerScience/CREMA-D ``README.md``, ``processFinishedResponses.R`` and
  ``tabulateVotesV2.r``.

Every block holds a case the rule must count (several words, a repeated word, a self-evaluation,
an unknown word, an annotator with no word, a repeated evaluator or rater) or a line it must
refuse (named in a warning). The tests count the expected votes from these lines by hand.
"""

from __future__ import annotations

import csv
from pathlib import Path

from _layouts import tone

# ---------------------------------------------------------------- IEMOCAP

_A = "A-E3:\tval 3; act 2; dom  2;\t()\n"

IEMOCAP_VOTE_BLOCKS = {
    "Ses01F_impro01": [
        (
            "F000",
            "neu",
            "C-E1:\tNeutral;\t()\nC-E2:\tNeutral;\t()\nC-E3:\tNeutral; Frustration;\t()\n"
            "C-F1:\tAnger;\t()\n" + _A,
        ),
        (
            "M000",
            "xxx",
            "C-E1:\tAnger;\t()\nC-E2:\tFrustration;\t(threatening, belligerent)\n"
            "C-E4:\tSadness;\t()\nC-M1:\tNeutral;\t()\n" + _A,
        ),
        (
            "F001",
            "exc",
            "C-E2:\tExcited;\t()\nC-E3:\tHappiness; Excited;\t()\nC-E4:\tExcited; Excited;\t()\n"
            + _A,
        ),
        ("M001", "xxx", "C-E1:\tFrustration;\t()\nC-E2:\tOther;\t()\nC-E3:\tSurprise;\t()\n"),
        ("F002", "oth", "C-E1:\tOther;\t()\nC-E2:\tAnger;\t()\n" + _A),
        (
            "M002",
            "xxx",
            "C-E1:\t\t()\nC-E2:\tNervousness;\t()\nC-E3:\tSadness;\t(slightly sad; tired)\n",
        ),
        ("F003", "neu", "C-E2:\tNeutral;\t()\nC-Ex Neutral;\nC-E2:\tAnger;\t()\n"),
        ("M003", "xxx", "C-F1:\tSadness;\t()\n" + _A),
    ],
    "Ses02F_impro01": [
        ("F000", "neu", "C-E1:\tNeutral;\t()\nC-E2:\tNEUTRAL;\t()\n"),
        ("M000", "ang", "C-E1:\tAnger;\t()\n"),
        ("F001", "xxx", "C-E1:\tHappiness;\t()\nC-E2:\tSadness;\t()\n"),
    ],
    "Ses03F_impro01": [
        ("F000", "sad", "C-E1:\tSadness;\t()\n"),
        ("M000", "hap", "C-E1:\tHappiness;\t()\n"),
        ("F001", "neu", "C-E1:\tNeutral;\t()\n"),
    ],
}
"""Dialog → (turn field, consensus code, the lines after the summary line)."""


def build_iemocap_votes(root: Path) -> Path:
    """Three sessions whose turn blocks carry the evaluator lines of `IEMOCAP_VOTE_BLOCKS`; the
    first file starts with a ``C-E`` line before any turn (it belongs to none)."""
    corpus = root / "IEMOCAP_full_release"
    for dialog, turns in IEMOCAP_VOTE_BLOCKS.items():
        session = int(dialog[3:5])
        text = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
        if session == 1:
            text += "C-E9:\tAnger;\t()\n\n"
        for field, code, lines in turns:
            turn = f"{dialog}_{field}"
            text += f"[6.2901 - 8.2357]\t{turn}\t{code}\t[2.5000, 2.5000, 2.5000]\n{lines}\n"
            tone(corpus / f"Session{session}/sentences/wav/{dialog}/{turn}.wav")
        evaluation = corpus / f"Session{session}/dialog/EmoEvaluation"
        evaluation.mkdir(parents=True, exist_ok=True)
        (evaluation / f"{dialog}.txt").write_text(text)
    return corpus


# ---------------------------------------------------------------- MSP-IMPROV

MSP_VOTE_BLOCKS = [
    (
        "S01A-F01-P-FM01",
        "A",
        "p001; Angry; Frustrated,Annoyed; A:4.0; V:1.0; D:4.0; N:5.0;\n"
        "p002; Angry; ; A:4.0; V:2.0; D:4.0; N:4.0;\n"
        "p003; Neutral; Calm; A:3.0; V:3.0; D:3.0; N:4.0;\n"
        "p001; Angry; Frustrated,Annoyed; A:4.0; V:1.0; D:4.0; N:5.0;",
    ),
    (
        "S01X-M01-R-MF01",
        "X",
        "p001; Happy; Excited; A:3.0; V:4.0; D:3.0; N:3.0;\n"
        "p004; Sad; ; A:2.0; V:2.0; D:2.0; N:3.0;\n"
        "p005; Other; Bored; A:2.0; V:3.0; D:3.0; N:3.0;",
    ),
    (
        "S02O-F02-S-FM02",
        "O",
        "p006; Other; Bored; A:2.0; V:3.0; D:3.0; N:3.0;\n"
        "p007; Bored; ; A:2.0; V:3.0; D:3.0; N:3.0;",
    ),
    (
        "S02N-M02-T-MF02",
        "N",
        "p008; neutral; ; A:3.0; V:3.0; D:3.0; N:4.0;\n"
        "p009; ; ; A:3.0; V:3.0; D:3.0; N:4.0;\n"
        "a line without a rater field\n"
        "UTD-IMPROV-S02N-M02-T-MF09.avi; N; A:3.0; V:3.0; D:3.0 ; N:1;",
    ),
    ("S03H-F03-P-FM03", "H", "p010; Happy; ; A:4.0; V:4.0; D:3.0; N:4.0;"),
    ("S03S-M03-R-MF03", "S", ""),
]
"""Clip id → consensus letter and the rater lines of its block."""


def build_msp_improv_votes(root: Path) -> Path:
    """Three sessions whose blocks carry the rater lines of `MSP_VOTE_BLOCKS`."""
    corpus = root / "MSP-IMPROV"
    blocks = []
    for uid, code, raters in MSP_VOTE_BLOCKS:
        sentence, speaker, kind, _ = uid.split("-")
        tone(corpus / f"Audio/session{int(speaker[1:])}/{sentence}/{kind}/MSP-IMPROV-{uid}.wav")
        consensus = f"UTD-IMPROV-{uid}.avi; {code}; A:3.0; V:3.0; D:3.0 ; N:4;"
        blocks.append(f"{consensus}\n{raters}".strip())
    (corpus / "Evalution.txt").write_text("\n\n".join(blocks) + "\n")
    return corpus


# ---------------------------------------------------------------- CREMA-D

CREMA_CLIPS = [
    ("1001_DFA_ANG_XX", "A"),
    ("1001_DFA_NEU_XX", "N"),
    ("1002_IEO_HAP_HI", "H"),
    ("1002_TIE_SAD_XX", "N:S"),
    ("1003_IWW_FEA_XX", "F"),
    ("1003_ITS_SAD_XX", "S"),
    ("1004_DFA_NEU_XX", "N"),
    ("1004_ITH_DIS_XX", "D:F"),
    ("1005_DFA_HAP_XX", "H"),
]
"""Clip → its ``MultiModalVote`` in summaryTable.csv."""

CREMA_RESPONSES = [
    # localid, queryType, clipName, respEmo
    ("r01", "3", "1001_DFA_ANG_XX", "A"),
    ("r02", "3", "1001_DFA_ANG_XX", "A"),
    ("r03", "3", "1001_DFA_ANG_XX", "D"),
    ("r04", "1", "1001_DFA_ANG_XX", "N"),
    ("r05", "2", "1001_DFA_ANG_XX", "N"),
    ("r01", "3", "1001_DFA_ANG_XX", "N"),
    ("r01", "3", "1002_TIE_SAD_XX", "N"),
    ("r02", "3", "1002_TIE_SAD_XX", "S"),
    ("r03", "3", "1002_TIE_SAD_XX", ""),
    ("r04", "3", "1004_ITH_DIS_XX", "D"),
    ("r05", "3", "1004_ITH_DIS_XX", "F"),
    ("r06", "x", "1004_ITH_DIS_XX", "N"),
    ("r07", "3", "", "N"),
    ("r08", "3", "1003_IWW_FEA_XX", "F"),
    ("r09", "3", "1003_IWW_FEA_XX", "Z"),
    ("r10", "1", "1005_DFA_HAP_XX", "H"),
]
"""The response rows of finishedResponses.csv, in file order."""

RESPONSE_HEADER = (
    "", "localid", "pos", "ans", "ttr", "queryType", "numTries", "clipNum", "questNum",
    "subType", "clipName", "sessionNums", "respEmo", "respLevel", "dispEmo", "dispVal",
    "dispLevel",
)  # fmt: skip


def build_crema_d_votes(root: Path, responses: bool = True) -> Path:
    """Five actors, ties among the clips, and (``responses``) finishedResponses.csv with the
    rows of `CREMA_RESPONSES`."""
    corpus = root / "CREMA-D"
    table = corpus / "processedResults/summaryTable.csv"
    table.parent.mkdir(parents=True)
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(["", "FileName", "VoiceVote", "VoiceLevel", "FaceVote", "FaceLevel",
                         "MultiModalVote", "MultiModalLevel"])  # fmt: skip
        for index, (name, vote) in enumerate(CREMA_CLIPS, 1):
            writer.writerow([index, name, vote, "60", vote, "70", vote, "50"])
            tone(corpus / "AudioWAV" / f"{name}.wav")
    if responses:
        with open(corpus / "finishedResponses.csv", "w", newline="") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_NONNUMERIC)
            writer.writerow(RESPONSE_HEADER)
            for index, (rater, query, clip, emotion) in enumerate(CREMA_RESPONSES, 1):
                answer = f"{emotion}_MD" if emotion else ""
                kind = int(query) if query.isdigit() else query  # R writes numbers unquoted
                writer.writerow([
                    str(index), rater, index, answer, 1500, kind, 0, index, index, 4, clip,
                    index, emotion, 50, clip[9:12], "XX", 50,
                ])  # fmt: skip
    return corpus
