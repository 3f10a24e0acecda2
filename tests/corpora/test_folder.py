"""The folder corpus (one sub-folder per label), speakers from a regular expression, and the
label set a user chooses: from the data, mapped and merged, with a minimum per class."""

from __future__ import annotations

import json

import pytest
from _clips import report, speakers_by_split, tone
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.corpora import CorpusError, OwnDataOptions, prepare_corpus, prepare_folder
from peft_ser.corpora.base import label_map

runner = CliRunner()
PATTERN = "^(?P<speaker>[^_]+)_"


def build_folder(root, labels=("hap", "exc", "neu", "ang", "sad"), speakers=5, takes=2):
    """``root/<label>/<speaker>_<take>.wav``, plus the odd files a real folder has."""
    for label in labels:
        for speaker in range(1, speakers + 1):
            for take in range(takes):
                tone(root / label / f"spk{speaker}_{take}.wav")
    tone(root / "stray.wav")  # no label folder
    tone(root / "neu" / "._spk1_0.wav")  # AppleDouble copy: skipped
    tone(root / ".cache" / "x.wav")  # hidden folder: skipped
    tone(root / "neu" / "noise.wav")  # no speaker in the name
    (root / "neu" / "notes.txt").write_text("not audio")
    return root


def test_labels_come_from_the_folder_names_sorted(tmp_path):
    root = build_folder(tmp_path / "data")
    prepared = prepare_folder(root, tmp_path / "out", speaker_pattern=PATTERN)
    assert prepared.labels == ["ang", "exc", "hap", "neu", "sad"]
    assert json.loads((tmp_path / "out/labels.json").read_text()) == prepared.labels
    by_key = {u.key: u for u in prepared.manifest}
    assert len(by_key) == 5 * 5 * 2
    clip = by_key["neu/spk3_1.wav"]
    assert (clip.speaker, clip.gender, clip.raw_label, clip.label, clip.corpus) == (
        "spk3", "U", "neu", "neu", "data"
    )  # fmt: skip
    assert report(tmp_path / "out") == {
        "neu/noise.wav": (
            "malformed_label_row",
            f"'noise.wav' does not match --speaker-pattern {PATTERN!r}",
        ),
        "stray": ("unlabelled_audio", "no label row refers to this file"),
    }
    assert len(prepared.folds) == 5
    assert all(len(test) == 1 for _, _, test in speakers_by_split(prepared))


def test_labels_are_mapped_and_merged_in_the_order_given(tmp_path):
    root = build_folder(tmp_path / "data")
    options = OwnDataOptions(labels="neu=Neutral,hap+exc=Happy,ang=Angry,sad=Sad")
    prepared = prepare_folder(root, tmp_path / "out", speaker_pattern=PATTERN, options=options)
    assert prepared.labels == ["Neutral", "Happy", "Angry", "Sad"]
    counts = json.loads((tmp_path / "out/summary.json").read_text())["total"]["per_label"]
    assert counts == {"Neutral": 10, "Happy": 20, "Angry": 10, "Sad": 10}
    assert {u.raw_label for u in prepared.manifest if u.label == "Happy"} == {"hap", "exc"}


def test_labels_outside_the_mapping_are_left_out_with_their_reason(tmp_path):
    root = build_folder(tmp_path / "data")
    options = OwnDataOptions(labels="neu,ang=Angry")
    prepared = prepare_folder(root, tmp_path / "out", speaker_pattern=PATTERN, options=options)
    assert prepared.labels == ["neu", "Angry"]
    reasons = [reason for reason, _ in report(tmp_path / "out").values()]
    assert reasons.count("outside_label_set") == 30
    assert report(tmp_path / "out")["sad/spk1_0.wav"] == ("outside_label_set", "label 'sad'")


def test_classes_below_the_minimum_are_left_out(tmp_path):
    root = build_folder(tmp_path / "data", labels=("a", "b", "c"), speakers=4)
    for take in (0, 1):
        for speaker in (2, 3, 4):
            (root / "c" / f"spk{speaker}_{take}.wav").unlink()
    options = OwnDataOptions(min_per_class=3, folds_k=4)
    prepared = prepare_folder(root, tmp_path / "out", speaker_pattern=PATTERN, options=options)
    assert prepared.labels == ["a", "b"]
    assert report(tmp_path / "out")["c/spk1_1.wav"] == (
        "rare_label",
        "class 'c' has 2 usable utterances, fewer than the minimum of 3",
    )
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["warnings"] == ["classes with fewer than 3 usable utterances left out: c (2)"]
    assert summary["excluded"]["rare_label"] == 2


def test_one_class_left_is_an_error(tmp_path):
    root = build_folder(tmp_path / "data", labels=("a", "b"), speakers=3)
    options = OwnDataOptions(labels="a")
    with pytest.raises(CorpusError) as error:
        prepare_folder(root, tmp_path / "out", speaker_pattern=PATTERN, options=options)
    assert str(error.value) == (
        f"only 1 class (a) in the 6 usable utterances of data under {root} (8 excluded; see "
        f"{tmp_path / 'out/report.csv'}): a classifier needs 2"
    )


def test_speakers_in_sub_folders_with_gender_and_session_groups(tmp_path):
    for label in ("calm", "tense"):
        for speaker, gender in (("anna", "f"), ("bert", "m"), ("cleo", "f")):
            tone(tmp_path / "data" / label / f"{speaker}-{gender}" / "day2" / "take1.flac")
    pattern = r"^(?P<speaker>\w+)-(?P<gender>[fm])/(?P<session>day\d)/"
    prepared = prepare_folder(tmp_path / "data", tmp_path / "out", speaker_pattern=pattern)
    clip = prepared.manifest[0]
    assert (clip.key, clip.speaker, clip.gender, clip.session) == (
        "calm/anna-f/day2/take1.flac", "anna", "F", "day2"
    )  # fmt: skip
    assert speakers_by_split(prepared) == [
        (["anna"], ["bert"], ["cleo"]),
        (["anna"], ["cleo"], ["bert"]),
        (["bert"], ["cleo"], ["anna"]),
    ]


def test_a_folder_without_speakers_needs_the_choice(tmp_path):
    root = build_folder(tmp_path / "data", labels=("a", "b"), speakers=3)
    with pytest.raises(CorpusError, match=r"name it with --speaker-pattern '\^\(\?P<speaker>"):
        prepare_folder(root, tmp_path / "out")
    prepared = prepare_folder(root, tmp_path / "out", options=OwnDataOptions(split_by="utterance"))
    assert {u.speaker for u in prepared.manifest} == {"Unknown"}
    assert prepared.speaker_leakage is not None


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("(unclosed", "--speaker-pattern '(unclosed' is not a regular expression (missing )"),
        ("^(\\w+)_", "--speaker-pattern '^(\\\\w+)_' has no group named speaker: write it as"),
    ],
)
def test_bad_speaker_patterns_are_refused(tmp_path, pattern, message):
    root = build_folder(tmp_path / "data", labels=("a", "b"), speakers=3)
    with pytest.raises(CorpusError) as error:
        prepare_folder(root, tmp_path / "out", speaker_pattern=pattern)
    assert str(error.value).startswith(message)


def test_a_root_without_label_folders_is_refused(tmp_path):
    tone(tmp_path / "flat/a.wav")
    with pytest.raises(CorpusError, match="has no sub-folders: a folder corpus keeps each"):
        prepare_folder(tmp_path / "flat")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("a=X,,b", "--labels 'a=X,,b': '' is not code[+code]=Name"),
        ("a=", "--labels 'a=': 'a=' is not code[+code]=Name"),
        ("a+=X", "--labels 'a+=X': 'a+=X' is not code[+code]=Name"),
        ("a=X,a=Y", "--labels 'a=X,a=Y': 'a' is mapped twice"),
    ],
)
def test_bad_label_mappings_are_refused(spec, message):
    with pytest.raises(CorpusError) as error:
        label_map(spec)
    assert str(error.value) == message


def test_a_named_corpus_takes_a_mapping_of_its_own_codes(tmp_path):
    from _layouts import build_emodb

    root = build_emodb(tmp_path / "in")
    prepared = prepare_corpus("emodb", root, tmp_path / "out", labels="W=Angry,N+L=Calm")
    assert prepared.labels == ["Angry", "Calm"]
    with pytest.raises(CorpusError) as error:
        prepare_corpus("emodb", root, tmp_path / "out", labels="W=Angry,X=Other")
    assert str(error.value) == (
        "--labels: 'X' is not a EmoDB label code; its codes are A, E, F, L, N, T, W"
    )


def test_cli_prepares_a_folder(tmp_path):
    root = build_folder(tmp_path / "data", labels=("hap", "exc", "neu"), speakers=4)
    out = tmp_path / "prepared/mine"
    result = runner.invoke(
        app,
        ["prepare", "folder", "--root", str(root), "--out", str(out), "--speaker-pattern",
         PATTERN, "--labels", "neu=Neutral,hap+exc=Happy", "--folds-k", "4"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "data (--labels neu=Neutral,hap+exc=Happy, protocol speaker-kfold)\n" in result.stdout
    assert json.loads((out / "labels.json").read_text()) == ["Neutral", "Happy"]
    misplaced = runner.invoke(app, ["prepare", "folder", "--root", str(root), "--columns", "a=b"])
    assert misplaced.exit_code == 2
    assert misplaced.stderr == (
        "error: prepare folder: give the folder with --root (no --manifest, no --columns)\n"
    )
