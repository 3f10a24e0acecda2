"""Symbolic links in a folder corpus: each folder and file counted once, broken links
reported, loops not followed round, linked sub-folders followed."""

from __future__ import annotations

import json
import os

from _clips import report, tone

from peft_ser.corpora import prepare_folder

PATTERN = "^(?P<speaker>[^_]+)_"


def build(root, labels=("angry", "calm"), speakers=5):
    """``root/<label>/s<n>_<take>.wav`` for 5 speakers and 2 takes: 10 clips a label."""
    for label in labels:
        for n in range(1, speakers + 1):
            for take in (1, 2):
                tone(root / label / f"s{n}_{take}.wav")
    return root


def prepare(root, out):
    prepared = prepare_folder(root, out, speaker_pattern=PATTERN)
    warnings = json.loads((out / "summary.json").read_text())["warnings"]
    return prepared, warnings


def test_a_label_folder_linked_to_another_is_counted_once(tmp_path):
    root = build(tmp_path / "data")
    (root / "Calm").symlink_to("calm")
    (root / "also_angry").symlink_to(root / "angry")
    prepared, warnings = prepare(root, tmp_path / "out")
    assert prepared.labels == ["angry", "calm"]
    assert len(prepared.manifest) == 20
    assert len({os.path.realpath(u.path) for u in prepared.manifest}) == 20
    assert "label folder Calm is a symbolic link to the label folder calm: its clips are " \
        "counted once, under calm" in warnings  # fmt: skip
    assert any(w.startswith("label folder also_angry is a symbolic link") for w in warnings)


def test_a_file_reached_twice_is_kept_under_its_own_path(tmp_path):
    root = build(tmp_path / "data")
    (root / "angry/s1_9.wav").symlink_to(root / "calm/s1_1.wav")
    (root / "calm/s2_9.wav").symlink_to(root / "calm/s2_1.wav")
    prepared, warnings = prepare(root, tmp_path / "out")
    assert {u.key for u in prepared.manifest} >= {"calm/s1_1.wav", "calm/s2_1.wav"}
    assert len(prepared.manifest) == 20
    found = report(tmp_path / "out")
    assert found["angry/s1_9.wav"] == (
        "duplicate",
        "the same file as calm/s1_1.wav (reached through a symbolic link); counted once",
    )
    assert found["calm/s2_9.wav"][0] == "duplicate"
    assert "2 files reached twice through symbolic links were counted once (see the " \
        "duplicate rows of report.csv)" in warnings  # fmt: skip


def test_broken_links_are_reported_not_skipped(tmp_path):
    root = build(tmp_path / "data")
    (root / "Gone").symlink_to(tmp_path / "nowhere")
    (root / "calm/s1_7.wav").symlink_to(tmp_path / "lost.wav")
    (root / "calm/s3").symlink_to(tmp_path / "no-folder")
    prepared, _ = prepare(root, tmp_path / "out")
    assert len(prepared.manifest) == 20
    found = report(tmp_path / "out")
    gone = f"broken symbolic link to '{tmp_path / 'nowhere'}': no file or folder there"
    assert found["Gone"] == ("missing_audio", gone)
    assert found["calm/s1_7.wav"][0] == "missing_audio"
    assert found["calm/s3"][1].startswith("broken symbolic link to")


def test_linked_sub_folders_are_followed_but_not_round_a_loop(tmp_path):
    root = build(tmp_path / "data")
    tone(tmp_path / "elsewhere/s6_1.wav")
    (root / "calm/more").symlink_to(tmp_path / "elsewhere")
    (root / "calm/loop").symlink_to(root / "calm")
    (root / "angry/up").symlink_to(root)
    prepared, warnings = prepare(root, tmp_path / "out")
    assert "calm/more/s6_1.wav" in {u.key for u in prepared.manifest}
    assert len(prepared.manifest) == 21
    assert f"angry/up is a symbolic link to {root}, a folder already counted: not followed" in (
        warnings
    )
    assert any(w.startswith("calm/loop is a symbolic link to") for w in warnings)
