"""A small MSP-Podcast release with per-annotator labels, in each layout a release may ship.

Where each format fact comes from:

- ``Labels/labels_consensus.csv``, header ``FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,
  Gender,Split_Set``; splits ``Train``, ``Development``, ``Test1``, ``Test3``; codes A S H U F
  D C N, X (no agreement); ``Unknown`` speakers: the consensus file as the challenge
  baselines read it (msplabresearch/MSP-Podcast_Challenge_IS2025,
  ``process_labels_for_categorical.py`` and ``utils/data/podcast.py``) and
  /work/shared/CORPORA.md.
- The challenge's test files lie in ``Audios/`` and are found by their name containing
  ``test3`` (``train_eval_files/eval_cat_ser.py`` of the same repository lists
  ``os.listdir(wav_dir)`` and keeps ``'test3' in filename``). The rest of their name
  (``MSP-PODCAST_test3_0001.wav`` here) is unverified; so is whether the consensus file lists
  them: one is listed without labels (``MSP-PODCAST_test3_0002.wav``), one is not.
- ``Labels/labels_detailed.csv`` and ``labels_detailed.json`` exist (readme of release 1.12,
  as published with a paper's supplementary code: "detailed individual annotations").
  ``DETAILED_ROWS`` mirrors the per-annotation CSV (``FileName``, ``WorkerID``,
  ``EmoClass_Major``, ``EmoClass_Second``, ``EmoAct``, ``EmoVal``, ``EmoDom``; release 2.0 as a
  public loader renames them, column order unverified), ``DETAILED_PACKED`` the ``EmoDetail``
  CSV (``WORKER…; primary; secondary; A:…; V:…; D:…;``, releases 1.7-1.12 as one public
  loader's regular expression parses them; unverified), ``DETAILED_JSON`` the JSON keyed by
  file and rater (Strong-AI-Lab/emotion, ``datasets/MSP-PODCAST/process.py``) and
  ``DETAILED_WORKERS`` the ``{"Workers": [...]}`` shape the lab documents for MSP-Face
  (3loi/MSP_Face, ``README.md``).
- Primary words ``Angry``, ``Sad``, ``Happy``, ``Surprise``, ``Fear``, ``Disgust``,
  ``Contempt``, ``Neutral`` and ``Other-…`` (public loaders: the 8-class maps over
  ``EmoClass_Major`` and their ``Other-Concerned``, ``Other-Annoyed`` secondary names);
  secondary lists comma-separated (3loi/MSP_Face ``"Happy,Concerned,Excited"``).

The same 30 annotations are written in every layout: whatever the file, each segment's
votes must be those of ``EXPECTED_VOTES``, counted by hand from the rows below.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from _layouts import tone

CONSENSUS = """\
FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
MSP-PODCAST_0101_0001.wav,A,5.2,2.4,5.0,101,Female,Train
MSP-PODCAST_0101_0002.wav,X,4.0,3.6,4.2,101,Female,Train
MSP-PODCAST_0102_0001.wav,N,3.8,4.2,4.0,102,Male,Train
MSP-PODCAST_0103_0001.wav,H,4.6,5.8,4.4,103,Male,Train
MSP-PODCAST_0104_0001.wav,S,2.6,2.2,3.0,104,Female,Train
MSP-PODCAST_0201_0001.wav,N,4.0,4.0,4.0,201,Male,Development
MSP-PODCAST_0201_0002.wav,C,4.4,3.0,5.2,201,Male,Development
MSP-PODCAST_0301_0001.wav,U,5.0,4.8,4.0,Unknown,Unknown,Test1
MSP-PODCAST_0400_0001.wav,F,4.2,2.8,3.4,Unknown,Unknown,Test3
MSP-PODCAST_test3_0002.wav,,,,,Unknown,Unknown,Test3
"""
TEST3_FILES = ("MSP-PODCAST_test3_0001.wav", "MSP-PODCAST_test3_0002.wav")
"""The challenge's unlabelled test files in ``Audios/``."""

DETAILED_ROWS = """\
FileName,WorkerID,EmoClass_Major,EmoClass_Second,EmoAct,EmoVal,EmoDom
MSP-PODCAST_0101_0001.wav,WORKER00001,Angry,"Angry,Frustrated",6,2,5
MSP-PODCAST_0101_0001.wav,WORKER00002,Angry,Angry,5,2,5
MSP-PODCAST_0101_0001.wav,WORKER00003,Contempt,"Contempt,Annoyed",4,3,5
MSP-PODCAST_0101_0001.wav,WORKER00004,Other-Annoyed,Annoyed,4,3,4
MSP-PODCAST_0101_0001.wav,WORKER00005,Angry,,5,2,6
MSP-PODCAST_0101_0002.wav,WORKER00001,Happy,"Happy,Amused",4,5,4
MSP-PODCAST_0101_0002.wav,WORKER00002,Neutral,,4,4,4
MSP-PODCAST_0101_0002.wav,WORKER00006,Sad,"Sad,Disappointed",3,2,3
MSP-PODCAST_0101_0002.wav,WORKER00007,Surprise,Surprise,5,4,4
MSP-PODCAST_0102_0001.wav,WORKER00002,Neutral,Neutral,4,4,4
MSP-PODCAST_0102_0001.wav,WORKER00003,Neutral,,4,4,4
MSP-PODCAST_0102_0001.wav,WORKER00008,Disgust,"Disgust,Contempt",4,2,5
MSP-PODCAST_0102_0001.wav,WORKER00009,Neutral,Concerned,3,4,4
MSP-PODCAST_0102_0001.wav,WORKER00010,Fear,Fear,5,2,2
MSP-PODCAST_0103_0001.wav,WORKER00001,Happy,"Happy,Excited",5,6,5
MSP-PODCAST_0103_0001.wav,WORKER00004,Happy,Happy,4,6,4
MSP-PODCAST_0103_0001.wav,WORKER00011,Neutral,,4,5,4
MSP-PODCAST_0201_0001.wav,WORKER00012,Neutral,,4,4,4
MSP-PODCAST_0201_0001.wav,WORKER00013,Neutral,Neutral,4,4,4
MSP-PODCAST_0201_0001.wav,WORKER00014,Other-Concerned,Concerned,4,3,4
MSP-PODCAST_0201_0002.wav,WORKER00012,Contempt,Contempt,5,3,6
MSP-PODCAST_0201_0002.wav,WORKER00013,Angry,"Angry,Contempt",5,2,5
MSP-PODCAST_0201_0002.wav,WORKER00015,Contempt,"Contempt,Disgust",4,3,5
MSP-PODCAST_0201_0002.wav,WORKER00016,Disgust,Disgust,4,3,5
MSP-PODCAST_0301_0001.wav,WORKER00017,Surprise,Surprise,5,5,4
MSP-PODCAST_0301_0001.wav,WORKER00018,Surprise,"Surprise,Happy",5,5,4
MSP-PODCAST_0301_0001.wav,WORKER00019,Happy,Happy,5,6,4
MSP-PODCAST_0400_0001.wav,WORKER00020,Fear,Fear,4,2,3
MSP-PODCAST_0400_0001.wav,WORKER00021,Fear,"Fear,Concerned",4,3,3
MSP-PODCAST_0400_0001.wav,WORKER00022,Sad,Sad,4,3,4
"""

EXPECTED_VOTES = {
    "MSP-PODCAST_0101_0001": {"A": 3.0, "C": 1.0, "O": 1.0},
    "MSP-PODCAST_0101_0002": {"H": 1.0, "N": 1.0, "S": 1.0, "U": 1.0},
    "MSP-PODCAST_0102_0001": {"N": 3.0, "D": 1.0, "F": 1.0},
    "MSP-PODCAST_0103_0001": {"H": 2.0, "N": 1.0},
    "MSP-PODCAST_0104_0001": None,
    "MSP-PODCAST_0201_0001": {"N": 2.0, "O": 1.0},
    "MSP-PODCAST_0201_0002": {"C": 2.0, "A": 1.0, "D": 1.0},
    "MSP-PODCAST_0301_0001": {"U": 2.0, "H": 1.0},
    "MSP-PODCAST_0400_0001": {"F": 2.0, "S": 1.0},
    "MSP-PODCAST_test3_0002": None,
}
"""Each segment's primary choices counted from ``DETAILED_ROWS`` (one vote per row: the
secondary column is not counted); 0104_0001 and the test file have no annotation row."""


def _packed_line(row: str) -> str:
    """A ``DETAILED_ROWS`` line in the ``EmoDetail`` layout."""
    name, worker, major, rest = row.split(",", 3)
    *second, act, val, dom = next(csv.reader([rest]))
    secondary = ",".join(second)
    return f'{name},"{worker}; {major}; {secondary}; A:{act}.0; V:{val}.0; D:{dom}.0;"'


DETAILED_PACKED = "FileName,EmoDetail\n" + "".join(
    _packed_line(line) + "\n" for line in DETAILED_ROWS.splitlines()[1:]
)
"""The same annotations as ``EmoDetail`` cells:
``MSP-PODCAST_0101_0001.wav,"WORKER00001; Angry; Angry,Frustrated; A:6.0; V:2.0; D:5.0;"``."""


def _answers() -> dict[str, list[dict[str, str]]]:
    """The annotations of ``DETAILED_ROWS`` per file, as the JSON layouts hold them."""
    files: dict[str, list[dict[str, str]]] = {}
    for row in csv.DictReader(io.StringIO(DETAILED_ROWS)):
        name = row.pop("FileName")
        files.setdefault(name, []).append(row)
    return files


DETAILED_JSON = json.dumps(
    {
        name: {
            answer["WorkerID"]: {k: v for k, v in answer.items() if k != "WorkerID"}
            for answer in answers
        }
        for name, answers in _answers().items()
    },
    indent=4,
)
"""``{"MSP-PODCAST_0101_0001.wav": {"WORKER00001": {"EmoClass_Major": "Angry", ...}}}``."""

DETAILED_WORKERS = json.dumps(
    {
        name: {
            "Workers": [
                {"Name": answer["WorkerID"], **{k: v for k, v in answer.items() if k != "WorkerID"}}
                for answer in answers
            ]
        }
        for name, answers in _answers().items()
    },
    indent=4,
)
"""``{"MSP-PODCAST_0101_0001.wav": {"Workers": [{"Name": "WORKER00001", ...}]}}``."""


def build_release(root: Path, detailed: dict[str, str | bytes] | None = None) -> Path:
    """``root/MSP-PODCAST`` with the consensus file, every segment's audio (the test files'
    too) and the ``detailed`` label files (name → content) in ``Labels/``."""
    corpus = root / "MSP-PODCAST"
    (corpus / "Labels").mkdir(parents=True)
    (corpus / "Labels" / "labels_consensus.csv").write_text(CONSENSUS)
    names = [line.split(",")[0] for line in CONSENSUS.splitlines()[1:]]
    for name in dict.fromkeys([*names, *TEST3_FILES]):
        tone(corpus / "Audios" / name)
    for name, content in (detailed or {}).items():
        path = corpus / "Labels" / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return corpus
