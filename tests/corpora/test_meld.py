"""MELD from a stand-in with its public layout (declare-lab/MELD README, MELD.Raw archive):
the three label tables, mp4 clips decoded with PyAV, audio tracks already extracted to
``waves/``, the release's known defects, and the official split's shared speakers."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import _tones
import numpy as np
import pytest
from _clips import junk, report, tone

from peft_ser.corpora import prepare_corpus
from peft_ser.corpora.meld import decode_audio_track
from peft_ser.data.audio import AudioError, load_audio

av = pytest.importorskip("av")

HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
          "Utterance_ID", "Season", "Episode", "StartTime", "EndTime"]  # fmt: skip
ROWS = {
    "train": [
        (0, 0, "Chandler", "neutral"),
        (0, 1, "The Interviewer", "neutral"),
        (0, 2, "Chandler", "joy"),
        (1, 0, "Rachel", "anger"),
        (1, 1, "Ross", "sadness"),
        (1, 2, "Ross", "surprise"),
        (125, 3, "Monica", "joy"),  # its clip does not decode
    ],
    "dev": [(0, 0, "Ross", "neutral"), (0, 1, "Phoebe", "anger"), (110, 7, "Joey", "joy")],
    "test": [(0, 0, "Mark", "surprise"), (0, 1, "Rachel", "anger"), (2, 0, "Joey", "sadness")],
}
FOLDERS = {"train": "train_splits", "dev": "dev_splits_complete",
           "test": "output_repeated_splits_test"}  # fmt: skip


def mp4(path: Path, seconds: float = 0.5, rate: int = 44100) -> Path:
    """A clip as MELD ships them: a small video track and a stereo AAC audio track."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 16, 16, "yuv420p"
        audio = container.add_stream("aac", rate=rate)
        audio.layout = "stereo"
        for _ in range(round(seconds * 10)):
            frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
            container.mux(video.encode(frame))
        wave = _tones.tone(seconds, rate=rate)
        frame = av.AudioFrame.from_ndarray(np.stack([wave, wave]), format="fltp", layout="stereo")
        frame.sample_rate = rate
        container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
        container.mux(video.encode(None))
    return path


def build_meld(root: Path, extracted: bool = False) -> Path:
    """``MELD.Raw`` with its tables and clips; dev (and every split when ``extracted``) has
    its audio tracks in ``waves/``; the known defects of the release are reproduced."""
    corpus = root / "MELD.Raw"
    corpus.mkdir(parents=True)
    for split, rows in ROWS.items():
        with open(corpus / f"{split}_sent_emo.csv", "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\r\n" if split == "train" else "\n")
            writer.writerow(HEADER)
            for number, (dialogue, utterance, speaker, emotion) in enumerate(rows, 1):
                text = "Oh. That’s so Monica, ‘Where’s number 27?!’"
                writer.writerow([number, text, speaker, emotion, "neutral", dialogue, utterance,
                                 8, 21, "00:16:16,059", "00:16:21,731"])  # fmt: skip
        folder = corpus / FOLDERS[split]
        for dialogue, utterance, _, _ in rows:
            clip = f"dia{dialogue}_utt{utterance}"
            if (split, clip) == ("dev", "dia110_utt7"):
                continue
            if split == "dev" or extracted:
                tone(folder / "waves" / f"{clip}.wav", seconds=0.5)
            if split != "dev":
                mp4(folder / f"{clip}.mp4")
    junk(corpus / "train_splits/dia125_utt3.mp4")
    if extracted:
        (corpus / "train_splits/waves/dia125_utt3.wav").unlink()
    mp4(corpus / "output_repeated_splits_test/final_videos_testdia101_utt0.mp4")
    (corpus / "train_splits/._dia0_utt0.mp4").write_bytes(b"\x00\x05\x16\x07Mac OS X")
    return root


def test_meld_mp4_clips_are_decoded_once_and_prepared(tmp_path):
    root = build_meld(tmp_path / "in")
    out = tmp_path / "out"
    prepared = prepare_corpus("MELD", root, out)
    assert prepared.labels == ["Neutral", "Angry", "Sad", "Happy"]
    by_key = {u.key: u for u in prepared.manifest}
    assert sorted(by_key) == [
        "dev_dia0_utt0", "dev_dia0_utt1", "test_dia0_utt1", "test_dia2_utt0",
        "train_dia0_utt0", "train_dia0_utt1", "train_dia0_utt2", "train_dia1_utt0",
        "train_dia1_utt1",
    ]  # fmt: skip
    clip = by_key["train_dia1_utt1"]
    assert clip.path == str(out.resolve() / "audio/train/dia1_utt1.wav")
    assert (clip.speaker, clip.gender, clip.raw_label, clip.label, clip.session) == (
        "Ross", "M", "sadness", "Sad", "train"
    )  # fmt: skip
    assert (clip.sample_rate, clip.channels) == (16000, 1)
    # AAC adds its encoder delay and pads the last frame: 0.5 s comes back a little longer
    assert 0.5 <= clip.duration <= 0.5 + 2 * 1024 / 44100
    assert by_key["train_dia0_utt1"].gender == "U"
    dev = by_key["dev_dia0_utt0"]
    assert dev.path == str(root / "MELD.Raw/dev_splits_complete/waves/dia0_utt0.wav")
    found = report(out)
    assert {key: reason for key, (reason, _) in found.items()} == {
        "train_dia125_utt3": "unreadable_audio",
        "train_dia1_utt2": "outside_label_set",
        "dev_dia110_utt7": "missing_audio",
        "test_dia0_utt0": "outside_label_set",
        "final_videos_testdia101_utt0": "unlabelled_audio",
    }
    assert found["train_dia125_utt3"][1].startswith("cannot decode its audio track (")
    (fold,) = prepared.folds
    assert (fold.name, len(fold.train), len(fold.dev), len(fold.test)) == ("official", 5, 2, 2)
    assert prepared.speaker_leakage == (
        "protocol paper is not speaker-independent: 1 of 1 folds share speakers between train "
        "and test (official: 1, Rachel); test scores overstate how well a model does on "
        "speakers it has never heard"
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["warnings"] == [prepared.speaker_leakage]
    assert summary["folds"][0]["shared_speakers"] == {
        "train_test": 1,
        "train_dev": 1,
        "dev_test": 0,
    }
    extracted = out / "audio/train/dia1_utt1.wav"
    first_write = extracted.stat().st_mtime_ns
    again = prepare_corpus("meld", root / "MELD.Raw", out)
    assert again.manifest == prepared.manifest
    assert extracted.stat().st_mtime_ns == first_write


def test_meld_with_extracted_audio_needs_no_decoding(tmp_path):
    root = build_meld(tmp_path / "in", extracted=True)
    prepared = prepare_corpus("meld", root, tmp_path / "out", labels="full")
    assert prepared.labels == ["Neutral", "Angry", "Sad", "Happy", "Surprised", "Fearful",
                               "Disgusted"]  # fmt: skip
    assert not (tmp_path / "out/audio").exists()
    assert all("/waves/" in u.path and u.duration == 0.5 for u in prepared.manifest)
    reasons = {key: reason for key, (reason, _) in report(tmp_path / "out").items()}
    assert reasons == {
        "train_dia125_utt3": "unreadable_audio",  # only the broken mp4 is left for it
        "dev_dia110_utt7": "missing_audio",
        "final_videos_testdia101_utt0": "unlabelled_audio",
    }


def test_decoding_a_clip_gives_16k_mono_and_names_what_fails(tmp_path):
    decode_audio_track(mp4(tmp_path / "a.mp4", seconds=1.0), tmp_path / "a.wav")
    samples = load_audio(tmp_path / "a.wav")
    assert 16000 <= samples.shape[0] <= 16000 + 2 * 1024 * 16000 // 44100 + 1
    assert 0.25 < float(np.max(np.abs(samples))) < 0.5
    silent_video = tmp_path / "v.mp4"
    with av.open(str(silent_video), "w") as container:
        video = container.add_stream("mpeg4", rate=10)
        video.width, video.height, video.pix_fmt = 16, 16, "yuv420p"
        frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        container.mux(video.encode(frame))
        container.mux(video.encode(None))
    for source, kind, problem in [
        (silent_video, "unreadable", "has no audio track"),
        (junk(tmp_path / "j.mp4"), "unreadable", "cannot decode its audio track ("),
        (tmp_path / "none.mp4", "missing", "file does not exist"),
    ]:
        with pytest.raises(AudioError) as error:
            decode_audio_track(source, tmp_path / "x.wav")
        assert (error.value.kind, error.value.problem[: len(problem)]) == (kind, problem)
    assert not os.path.exists(tmp_path / "x.wav")
