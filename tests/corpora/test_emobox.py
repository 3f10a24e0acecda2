"""`prepare emobox`: EmoBox's fold lists and label maps (fixtures in `_emobox`, written in
EmoBox's format) become prepared folds that equal the lists, with the quirks handled."""

from __future__ import annotations

import json
import os
from pathlib import Path

import _emobox as E
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from peft_ser.cli import app
from peft_ser.corpora.base import CorpusError
from peft_ser.corpora.emobox import parse_row, prepare_emobox, read_label_map, read_metadata
from peft_ser.corpora.emobox_corpora import EMOBOX_CORPORA
from peft_ser.data.manifest import read_prepared

runner = CliRunner()
BUILDERS = {"iemocap": E.iemocap, "emodb": E.emodb, "cremad": E.cremad, "meld": E.meld,
            "emovo": E.emovo}  # fmt: skip


def _lists(folder: Path, fold: str, split: str) -> list[dict[str, object]]:
    name = f"{folder.name}_{split}_{fold}.jsonl"
    path = folder / fold / name
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Every fixture corpus, prepared once."""
    base = tmp_path_factory.mktemp("emobox")
    result = {}
    for name, build in BUILDERS.items():
        folder = build(base / "data")
        E.audio_for(base / "root", folder)
        prepare_emobox(folder, base / "root", base / "out" / name, check_silence=False)
        result[name] = (folder, read_prepared(base / "out" / name))
    return result


@pytest.mark.parametrize("name", list(BUILDERS))
def test_folds_equal_emobox_lists(prepared, name):
    folder, corpus = prepared[name]
    labels = {u.key: u.label for u in corpus.manifest}
    label_map = read_label_map(folder)
    lower = {k.lower(): v for k, v in label_map.items()}
    for fold in corpus.folds:
        train = [
            str(r["key"])
            for r in _lists(folder, fold.name, "train")
            if str(r["emo"]).lower() in lower
        ]
        valid = [str(r["key"]) for r in _lists(folder, fold.name, "valid")]
        test = _lists(folder, fold.name, "test")
        in_map = [str(r["key"]) for r in test if str(r["emo"]).lower() in lower]
        assert fold.test == in_map
        if valid:
            assert (fold.train, fold.dev) == (train, valid)
        else:
            assert sorted(fold.train + fold.dev) == sorted(train)
            assert not set(fold.train) & set(fold.dev) and fold.dev
        for row in [*_lists(folder, fold.name, "train"), *test]:
            if str(row["key"]) in labels:
                assert labels[str(row["key"])] == lower[str(row["emo"]).lower()]


def test_quirks(prepared):
    _, emodb = prepared["emodb"]
    assert emodb.labels == ["Angry", "Boredom", "Neutral", "Sad"]
    assert {u.raw_label for u in emodb.manifest if u.label == "Neutral"} == {"neutral"}
    report = (emodb.directory / "report.csv").read_text()
    assert "emodb-01a05" in report and "outside_label_set" in report
    summary = json.loads((emodb.directory / "summary.json").read_text())
    assert any("'neutral' as 'Neutral'" in w for w in summary["warnings"])
    _, iemocap = prepared["iemocap"]
    assert iemocap.labels == ["Neutral", "Happy", "Angry", "Sad"]
    assert {u.raw_label for u in iemocap.manifest if u.label == "Happy"} == {"hap", "exc"}
    speaker = {u.key: u.speaker for u in iemocap.manifest}
    for fold in iemocap.folds:  # 8 training speakers: dev keeps speakers apart
        assert not {speaker[k] for k in fold.dev} & {speaker[k] for k in fold.train}
    _, cremad = prepared["cremad"]
    assert "share speakers between train and test" in (cremad.speaker_leakage or "")
    _, emovo = prepared["emovo"]
    assert len(emovo.folds) == 6 and emovo.labels == ["Neutral", "Happy", "Angry"]


def test_dev_split_is_deterministic(tmp_path):
    folder = E.iemocap(tmp_path / "data")
    E.audio_for(tmp_path / "root", folder)
    runs = []
    for out in ("a", "b"):
        prepare_emobox(folder, tmp_path / "root", tmp_path / out, check_silence=False)
        runs.append((tmp_path / out / "folds.json").read_text())
    assert runs[0] == runs[1]


def test_segments_and_second_spelling(tmp_path):
    rows = [E.row("pavoque", f"s{i}", "angry" if i % 2 else "neutral",
                  wav="downloads/pavoque/pavoque-long.wav", start_time=i * 0.5,
                  end_time=i * 0.5 + 0.4) for i in range(12)]  # fmt: skip
    folder = E.write_corpus(
        tmp_path / "data", "pavoque", {1: {"train": rows[:9]}}, {"angry": "Angry", "neutral": "N"}
    )
    E.write_list(folder / "fold_1" / "pavoque_test_fold1.jsonl", rows[9:])
    E.tone(tmp_path / "root" / "downloads/pavoque/pavoque-long.wav", 7.0)
    corpus = prepare_emobox(folder, tmp_path / "root", tmp_path / "out", check_silence=False)
    assert corpus.folds[0].test == [f"pavoque-s{i}" for i in (9, 10, 11)]
    assert {(u.start, u.end) for u in corpus.manifest if u.key == "pavoque-s3"} == {(1.5, 1.9)}


def test_cli_prepares_and_lists(tmp_path):
    folder = E.emodb(tmp_path / "data")
    E.audio_for(tmp_path / "root", folder)
    args = ["prepare", "emobox", "--metadata", str(folder), "--root", str(tmp_path / "root")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "emobox-emodb" in result.output and (tmp_path / "out" / "folds.json").exists()
    listed = runner.invoke(app, ["prepare", "emobox", "--list"])
    assert listed.exit_code == 0
    rows = listed.output.splitlines()[1:]
    assert [row.split()[0] for row in rows] == list(EMOBOX_CORPORA) and len(rows) == 32


def test_registry_counts():
    assert len(EMOBOX_CORPORA) == 32
    languages = {c.language for c in EMOBOX_CORPORA.values()} - {"Mix"}
    assert len(languages) == 14  # README: "14 distinct languages"; ESD and ASVP-ESD are "Mix"
    assert EMOBOX_CORPORA["iemocap"].folds == 5 and EMOBOX_CORPORA["cremad"].folds == 1


def _damage(folder: Path, how: str) -> None:
    fold = folder / "fold_1"
    if how == "no_map":
        (folder / "label_map.json").unlink()
    elif how == "bad_map":
        (folder / "label_map.json").write_text("[1, 2]")
    elif how == "no_fold":
        (folder / "fold_5" / "emodb_test_fold_5.jsonl").rename(folder / "x")
        for path in (folder / "fold_5").iterdir():
            path.unlink()
        (folder / "fold_5").rmdir()
    elif how == "no_train":
        (fold / "emodb_train_fold_1.jsonl").unlink()
    elif how == "truncated":
        text = (fold / "emodb_test_fold_1.jsonl").read_text()
        (fold / "emodb_test_fold_1.jsonl").write_text(text[: len(text) // 2])
    elif how == "empty_list":
        (fold / "emodb_test_fold_1.jsonl").write_text("\n")
    elif how == "no_label":
        E.write_list(fold / "emodb_test_fold_1.jsonl", [{"key": "k", "wav": "a.wav"}])
    elif how == "nan_segment":
        (fold / "emodb_test_fold_1.jsonl").write_text(
            '{"key": "k", "wav": "a.wav", "emo": "sad", "start_time": NaN}\n'
        )
    elif how == "conflict":
        rows = _lists(folder, "fold_1", "test")
        rows[0]["emo"] = "sad"
        E.write_list(fold / "emodb_test_fold_1.jsonl", rows)
    elif how == "unknown":  # a folder of another name whose lists name no EmoBox corpus
        other = folder.with_name("mycorpus")
        (other / "fold_1").mkdir(parents=True)
        (other / "label_map.json").write_text('{"a": "A"}')
        E.write_list(other / "fold_1" / "mycorpus_test_fold_1.jsonl", [E.row("my", "k", "a")])


@pytest.mark.parametrize(
    "how, message",
    [
        ("no_map", "no label_map.json"),
        ("bad_map", "expected a JSON object"),
        ("no_fold", "found fold_1, fold_2, fold_3, fold_4: the metadata is incomplete"),
        ("no_train", "no emodb_train_fold_1.jsonl"),
        ("truncated", "emodb_test_fold_1.jsonl:"),
        ("empty_list", "the fold list is empty"),
        ("no_label", "no emo or label text"),
        ("nan_segment", "start_time nan is not a number"),
        ("conflict", "is listed with"),
        ("unknown", "is not one of EmoBox's 32 corpora"),
    ],
)
def test_bad_metadata_is_one_line(tmp_path, how, message):
    folder = E.emodb(tmp_path / "data")
    E.audio_for(tmp_path / "root", folder)
    _damage(folder, how)
    if how == "unknown":
        folder = folder.with_name("mycorpus")
    args = ["prepare", "emobox", "--metadata", str(folder), "--root", str(tmp_path / "root")]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert message in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--labels", "full"], "--labels not taken"),
        (["--seed", "-1"], "--seed -1"),
        (["--min-duration", "nan"], "--min-duration nan"),
    ],
)
def test_refused_options(tmp_path, extra, message):
    folder = E.meld(tmp_path / "data")
    args = ["prepare", "emobox", "--metadata", str(folder), "--root", str(tmp_path)]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 2 and message in result.output, result.output


def test_list_refuses_metadata_and_other_corpora_refuse_list(tmp_path):
    result = runner.invoke(app, ["prepare", "emobox", "--list", "--root", str(tmp_path)])
    assert result.exit_code == 2 and "takes no" in result.output
    result = runner.invoke(app, ["prepare", "emodb", "--list"])
    assert result.exit_code == 2 and "only for prepare emobox" in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_out(tmp_path):
    folder = E.meld(tmp_path / "data")
    E.audio_for(tmp_path / "root", folder)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(CorpusError):
            prepare_emobox(folder, tmp_path / "root", locked / "out", check_silence=False)
    finally:
        locked.chmod(0o700)


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(key=_TEXT, wav=_TEXT, emo=_TEXT, old=st.booleans(), rate=st.none() | st.integers(1, 10**6))
def test_parse_row_round_trips(key, wav, emo, old, rate):
    names = ("key", "audio", "label") if old else ("key", "wav", "emo")
    item = dict(zip(names, (key, wav, emo), strict=True)) | {"sample_rate": rate}
    if not all(v.strip() for v in (key, wav, emo)):
        with pytest.raises(CorpusError):
            parse_row(json.dumps(item), "x:1")
        return
    row = parse_row(json.dumps(item), "x:1")
    assert (row.key, row.wav, row.emo, row.sample_rate) == (key.strip(), wav.strip(),
                                                             emo.strip(), rate)  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=40))
def test_parse_row_refuses_garbage_in_one_error(text):
    try:
        parse_row(text, "x:1")
    except CorpusError as error:
        assert str(error).startswith("x:1: ") and "\n" not in str(error)


def test_read_metadata_reports_second_spelling_only_when_alone(tmp_path):
    folder = E.emodb(tmp_path / "data")
    metadata = read_metadata(folder)
    # both spellings ship; the _fold_<k> one (with the fifth, out-of-map row) is read
    assert len(metadata.folds[0].test) == 5
