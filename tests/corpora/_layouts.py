"""Small stand-ins of the real corpora: same folders, file names and label-file formats.

Audio is 0.2 s of tone (or silence) written with soundfile, so a whole corpus builds in
milliseconds; every quirk the parsers must survive is reproduced where the real corpus has it.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import _tones
import numpy as np
import soundfile as sf

from peft_ser.data.manifest import PreparedCorpus


def tone(path: Path, rate: int = 16000, channels: int = 1, silent: bool = False) -> Path:
    """Write 0.2 s of a 220 Hz tone (or digital silence) as 16-bit WAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    signal = _tones.tone(0.2, rate=rate, dtype=np.float64)
    signal = np.zeros_like(signal) if silent else signal
    sf.write(path, np.repeat(signal[:, None], channels, axis=1), rate, subtype="PCM_16")
    return path


# ---------------------------------------------------------------- IEMOCAP

IEMOCAP_BASE = {
    "impro01": [
        ("F000", "neu"),
        ("M000", "ang"),
        ("F001", "hap"),
        ("M001", "exc"),
        ("F002", "xxx"),
    ],
    "script01_1": [("F000", "sad"), ("M000", "fru"), ("F001", "neu")],
}
IEMOCAP_EXTRA = {
    3: {"Ses03M_impro05a": [("F017", "sad"), ("M003", "oth")]},
    5: {"Ses05M_script01_1b": [("F000", "hap"), ("M000", "abc")]},
}


IEMOCAP_VAD = {"Ses01F_impro01_M000": (1.5, 4.0, 3.5)}
"""Turns whose summary line carries other ratings than 2.5 (``[V, A, D]`` order)."""


def _iemocap_block(turn: str, label: str) -> str:
    vad = ", ".join(f"{v:.4f}" for v in IEMOCAP_VAD.get(turn, (2.5, 2.5, 2.5)))
    return (
        f"[6.2901 - 8.2357]\t{turn}\t{label}\t[{vad}]\n"
        "C-E2:\tNeutral;\t()\n"
        "C-F1:\tNeutral; Anger;\t()\n"
        "A-E3:\tval 3; act 2; dom  2;\t()\n\n"
    )


def _wav(corpus: Path, session: int, name: str, field: str) -> Path:
    dialog = f"Ses0{session}F_{name}"
    return corpus / f"Session{session}/sentences/wav/{dialog}/{dialog}_{field}.wav"


def build_iemocap(root: Path) -> Path:
    """Five sessions; defects: S2 missing wav, S1 silent, S2 corrupt, S4 empty, S4 duplicate
    row, one unlabelled wav, an AppleDouble file and a Categorical/ sub-folder."""
    corpus = root / "IEMOCAP_full_release"
    for session in range(1, 6):
        dialogs = {f"Ses0{session}F_{name}": turns for name, turns in IEMOCAP_BASE.items()}
        dialogs |= IEMOCAP_EXTRA.get(session, {})
        for dialog, turns in dialogs.items():
            text = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
            for field, label in turns:
                turn = f"{dialog}_{field}"
                text += _iemocap_block(turn, label)
                tone(corpus / f"Session{session}/sentences/wav/{dialog}/{turn}.wav")
            evaluation = corpus / f"Session{session}/dialog/EmoEvaluation"
            evaluation.mkdir(parents=True, exist_ok=True)
            (evaluation / f"{dialog}.txt").write_text(text)
    _wav(corpus, 2, "impro01", "F001").unlink()
    tone(_wav(corpus, 1, "script01_1", "F001"), silent=True)
    _wav(corpus, 2, "script01_1", "F000").write_bytes(b"RIFF junk" * 9)
    _wav(corpus, 4, "script01_1", "F001").write_bytes(b"")
    tone(_wav(corpus, 1, "impro01", "M099"))
    dup = corpus / "Session4/dialog/EmoEvaluation/Ses04F_impro01.txt"
    dup.write_text(dup.read_text() + _iemocap_block("Ses04F_impro01_F000", "ang"))
    evaluation = corpus / "Session1/dialog/EmoEvaluation"
    (evaluation / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    (evaluation / "Categorical").mkdir()
    (evaluation / "Categorical/Ses01F_impro01_e1_cat.txt").write_text(
        _iemocap_block("Ses01F_impro01_F099", "neu")
    )
    return corpus


# ---------------------------------------------------------------- CREMA-D

CREMA_EXTRA = [
    ("1001_TIE_SAD_XX", "N:S"),
    ("1002_ITS_ANG_XX", "A"),
    ("1003_IWW_FEA_XX", "F"),
    ("1005_IOM_HAP_XX", "S"),
    ("1006_WSI_FEA_XX", "F:N:S"),
    ("1076_MTI_SAD_XX", "S"),
]


def build_crema_d(root: Path) -> Path:
    """91 actors with a Happy and a Neutral clip each, plus ties, a crowd vote that differs
    from the file name, the silent 1076_MTI_SAD_XX and the misnamed 1040_ITH_SAD_X."""
    corpus = root / "CREMA-D"
    rows = []
    for actor in range(1001, 1092):
        rows += [(f"{actor}_IEO_HAP_HI", "H"), (f"{actor}_DFA_NEU_XX", "N")]
    rows += CREMA_EXTRA
    for name, _ in rows:
        tone(corpus / "AudioWAV" / f"{name}.wav", silent=name == "1076_MTI_SAD_XX")
    tone(corpus / "AudioWAV/1040_ITH_SAD_X.wav")
    header = ["", "FileName", "VoiceVote", "VoiceLevel", "FaceVote", "FaceLevel"]
    header += ["MultiModalVote", "MultiModalLevel"]
    table = corpus / "processedResults/summaryTable.csv"
    table.parent.mkdir(parents=True)
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle, quoting=csv.QUOTE_ALL)
        writer.writerow(header)
        for index, (name, vote) in enumerate(rows, 1):
            writer.writerow([index, name, vote, "60", vote, "70", vote, "43.25:39.00"])
    with open(corpus / "VideoDemographics.csv", "w", newline="") as handle:
        handle.write('"ActorID","Age","Sex","Race","Ethnicity"\n')
        for actor in range(1001, 1091):
            sex = "Female" if actor % 2 == 0 else "Male"
            handle.write(f'{actor},51,"{sex}","Caucasian","Not Hispanic"\n')
    return corpus


# ---------------------------------------------------------------- MSP-IMPROV


def build_msp_improv(root: Path, label_file: str, audio_level: bool) -> Path:
    """Six sessions × 4 utterances (A, H, N, S), plus X and O labels and one malformed block."""
    corpus = root / "MSP-IMPROV"
    audio = corpus / "Audio" if audio_level else corpus
    blocks = []
    for s in range(1, 7):
        items = [
            (f"S01A-F0{s}-P-FM01", "A"),
            (f"S02H-M0{s}-R-MF02", "H"),
            (f"S03N-F0{s}-S-FM03", "N"),
            (f"S04S-M0{s}-T-MF04", "S"),
        ]
        items += {1: [("S05X-F01-P-FM05", "X")], 2: [("S06O-M02-P-MF06", "O")]}.get(s, [])
        for uid, label in items:
            sentence, _, kind, _ = uid.split("-")
            tone(audio / f"session{s}/{sentence}/{kind}/MSP-IMPROV-{uid}.wav")
            ratings = (
                "A:4.2; V:1.8; D:3.6 ;" if uid == "S01A-F01-P-FM01" else "A:2.4; V:3.0; D:2.8 ;"
            )
            blocks.append(
                f"UTD-IMPROV-{uid}.avi; {label}; {ratings} N:5;\n"
                f"rater-0042; Angry; A:2.0; V:3.0; D:3.0; N:1;\n"
                f"rater-0043; Neutral; A:3.0; V:3.0; D:3.0; N:1;"
            )
    blocks.append("garbage line without a consensus name; N;")
    (corpus / label_file).write_text("\n\n".join(blocks) + "\n")
    return corpus


# ---------------------------------------------------------------- MSP-Podcast

PODCAST_ROWS = [
    ("MSP-PODCAST_0001_0001.wav", "N", "30", "Male", "Train"),
    ("MSP-PODCAST_0001_0002.wav", "A", "30", "Male", "Train"),
    ("MSP-PODCAST_0002_0001.wav", "S", "31", "Female", "Train"),
    ("MSP-PODCAST_0002_0002.wav", "H", "Unknown", "Unknown", "Train"),
    ("MSP-PODCAST_1023_0235.wav", "H", "32", "Female", "Train"),
    ("MSP-PODCAST_0003_0001.wav", "C", "33", "Male", "Train"),
    ("MSP-PODCAST_0003_0002.wav", "O", "33", "Male", "Train"),
    ("MSP-PODCAST_0004_0001.wav", "N", "40", "Female", "Development"),
    ("MSP-PODCAST_0004_0002.wav", "H", "40", "Female", "Development"),
    ("MSP-PODCAST_0005_0001.wav", "A", "50", "Male", "Test1"),
    ("MSP-PODCAST_0005_0002.wav", "S", "50", "Male", "Test1"),
    ("MSP-PODCAST_0005_0003.wav", "X", "50", "Male", "Test1"),
    ("MSP-PODCAST_0005_0004.wav", "N", "50", "Male", "Test1"),
    ("MSP-PODCAST_0006_0001.wav", "N", "60", "Female", "Test2"),
]


PODCAST_RATINGS = {
    "MSP-PODCAST_0001_0002.wav": ("6.4", "1.6", "5.8"),
    "MSP-PODCAST_0003_0002.wav": ("3.0", "3.4", "3.8"),
    "MSP-PODCAST_0005_0003.wav": ("4.4", "2.0", "4.6"),
    "MSP-PODCAST_0004_0002.wav": ("", "", ""),
}
"""EmoAct, EmoVal, EmoDom of rows other than 2.2, 4.0, 2.6; 0004_0002 has none."""


CHALLENGE_ROWS = [
    *(
        (
            f"MSP-PODCAST_01{i:02d}_0001.wav",
            code,
            f"1{i:02d}",
            "Female" if i % 2 else "Male",
            "Train",
        )
        for i, code in enumerate("AHSFUCDNXO")
    ),
    ("MSP-PODCAST_0200_0001.wav", "N", "200", "Male", "Development"),
    ("MSP-PODCAST_0200_0002.wav", "C", "200", "Male", "Development"),
    ("MSP-PODCAST_0300_0001.wav", "H", "300", "Female", "Test1"),
    ("MSP-PODCAST_0300_0002.wav", "S", "300", "Female", "Test1"),
    ("MSP-PODCAST_0300_0003.wav", "X", "300", "Female", "Test1"),
    ("MSP-PODCAST_0400_0001.wav", "U", "Unknown", "Unknown", "Test3"),
    ("MSP-PODCAST_0400_0002.wav", "F", "Unknown", "Unknown", "Test3"),
    ("MSP-PODCAST_0400_0003.wav", "D", "Unknown", "Unknown", "Test3"),
    ("MSP-PODCAST_0500_0001.wav", "A", "500", "Male", "Test2"),
]
"""A release with all 8 challenge classes in Train, X and O, and a Test3 split."""


def build_msp_podcast(
    root: Path, label_file: str, dev_name: str, rows: list[tuple[str, ...]] = PODCAST_ROWS
) -> Path:
    """14 label rows; 1023_0235 is stereo 44.1 kHz, 0005_0004 has no audio, 0004_0002 no
    attribute ratings."""
    corpus = root / "MSP-PODCAST"
    (corpus / "Labels").mkdir(parents=True)
    lines = ["FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"]
    for name, label, speaker, gender, split in rows:
        split = dev_name if split == "Development" else split
        ratings = ",".join(PODCAST_RATINGS.get(name, ("2.2", "4.0", "2.6")))
        lines.append(f"{name},{label},{ratings},{speaker},{gender},{split}")
        if name == "MSP-PODCAST_1023_0235.wav":
            tone(corpus / "Audios" / name, rate=44100, channels=2)
        elif name != "MSP-PODCAST_0005_0004.wav":
            tone(corpus / "Audios" / name)
    (corpus / "Labels" / label_file).write_text("\n".join(lines) + "\n")
    return corpus


# ---------------------------------------------------------------- RAVDESS and EmoDB


def build_ravdess(root: Path) -> Path:
    """24 actors × neutral, calm, happy, angry at 48 kHz; a song file and an unparsable name."""
    for actor in range(1, 25):
        for emotion in ("01", "02", "03", "05"):
            tone(root / f"Actor_{actor:02d}/03-01-{emotion}-01-01-01-{actor:02d}.wav", rate=48000)
    tone(root / "Actor_02/03-02-03-01-01-01-02.wav", rate=48000)
    tone(root / "Actor_01/notes.wav", rate=48000)
    return root


EMODB_SPEAKERS = ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]


def build_emodb(root: Path) -> Path:
    """10 speakers × anger (W), neutral (N), fear (A); one file outside the naming scheme."""
    for speaker in EMODB_SPEAKERS:
        for emotion in "WNA":
            tone(root / f"wav/{speaker}a01{emotion}a.wav")
    tone(root / "wav/readme.wav")
    return root


# ---------------------------------------------------------------- checks


def report_counts(out: Path) -> Counter[str]:
    """Exclusions per reason, read back from report.csv."""
    with open(out / "report.csv", newline="") as handle:
        return Counter(row["reason"] for row in csv.DictReader(handle))


def label_counts(prepared: PreparedCorpus, keys: list[str] | None = None) -> dict[str, int]:
    """Utterances per label (of ``keys``, or of the whole manifest)."""
    wanted = None if keys is None else set(keys)
    chosen = [u.label for u in prepared.manifest if wanted is None or u.key in wanted]
    return dict(Counter(chosen))


def assert_speaker_independent(prepared: PreparedCorpus) -> None:
    """No speaker appears in two of train/dev/test of any fold."""
    speaker = {u.key: u.speaker for u in prepared.manifest}
    for fold in prepared.folds:
        train, dev, test = (
            {speaker[k] for k in keys} for keys in (fold.train, fold.dev, fold.test)
        )
        assert not train & dev and not train & test and not dev & test, fold.name
