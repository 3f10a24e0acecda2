"""Property tests of the table parser: tables of random rows, whose speaker and label cells
are written in random types and spellings, give either a clean prepared corpus (every
speaker read by the one rule, every fold speaker-disjoint) or a `UserError`, never another
exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from _clips import tone, write_table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peft_ser.corpora import OwnDataOptions, prepare_table
from peft_ser.corpora.cells import text_cell
from peft_ser.utils.errors import UserError

CLIPS = 24
CLASSES = ("calm", "angry", "sad")
SPEAKER_SPELLINGS = {
    # how a format may write speaker number n; each must read as the speaker "n"
    "jsonl": (lambda n: n, float, str, lambda n: f"{n}.0", lambda n: f" {n} ", lambda n: f"+{n}"),
    "csv": (str, lambda n: f"{n}.0", lambda n: f" {n} ", lambda n: f"{n}e0", lambda n: f"{n}.00"),
    "parquet": (float,),
}
LABEL_SPELLINGS = (str.lower, str.capitalize, str.upper, lambda name: f" {name}  ")
BAD_CELLS = (True, False, ["calm"], {"label": "calm"}, [])


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    return [tone(folder / f"clip{index}.wav", hz=200 + 10 * index) for index in range(CLIPS)]


rows_strategy = st.lists(
    st.tuples(
        st.integers(1, 7),  # speaker number
        st.integers(0, 5),  # speaker spelling (modulo the format's)
        st.sampled_from(CLASSES),
        st.sampled_from(LABEL_SPELLINGS),
        st.booleans(),  # the speaker written as a name (s3) rather than a number
    ),
    min_size=4,
    max_size=CLIPS,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    fmt=st.sampled_from(sorted(SPEAKER_SPELLINGS)),
    rows=rows_strategy,
    bad=st.none()
    | st.tuples(
        st.integers(0, CLIPS - 1), st.sampled_from(["speaker", "label"]), st.sampled_from(BAD_CELLS)
    ),
    missing=st.sets(st.integers(0, CLIPS - 1), max_size=3),
)
def test_random_tables_give_a_clean_corpus_or_a_user_error(clips, fmt, rows, bad, missing):
    expected_speaker, expected_class, written = {}, {}, []
    for index, (number, spelling, name, spell_label, named) in enumerate(rows):
        spellings = SPEAKER_SPELLINGS[fmt]
        speaker = f"s{number}" if named else spellings[spelling % len(spellings)](number)
        if fmt == "parquet":
            speaker = str(speaker) if named else speaker
        label = spell_label(name)
        if index in missing:
            speaker = None
        path = str(clips[index])
        expected_speaker[path] = (
            "Unknown" if speaker is None else (f"s{number}" if named else str(number))
        )
        expected_class[path] = name
        written.append({"path": path, "label": label, "speaker": speaker})
    if fmt == "parquet" and any(isinstance(r["speaker"], str) for r in written):
        for row in written:  # one type per Parquet column: all text then
            row["speaker"] = None if row["speaker"] is None else str(row["speaker"])
    broken = bad is not None and bad[0] < len(written) and fmt == "jsonl"
    if broken:
        written[bad[0]][bad[1]] = bad[2]
    with tempfile.TemporaryDirectory() as folder:
        table = write_table(Path(folder) / f"clips.{fmt}", written)
        options = OwnDataOptions(check_silence=False, folds_k=3)
        try:
            prepared = prepare_table(table, Path(folder) / "out", options=options)
        except UserError as error:
            assert "\n" not in str(error)
            if broken:
                assert f"line {bad[0] + 1}: the {bad[1]!r} column holds" in str(error)
            return
    assert not broken
    for utterance in prepared.manifest:
        assert utterance.speaker == expected_speaker[utterance.path]
        assert text_cell(utterance.speaker) == utterance.speaker
    label_of = {}
    for utterance in prepared.manifest:
        assert (
            label_of.setdefault(expected_class[utterance.path], utterance.label) == utterance.label
        )
    assert len(set(label_of.values())) == len(label_of) == len(prepared.labels)
    assert prepared.speaker_leakage is None
    speaker = {u.key: u.speaker for u in prepared.manifest}
    for fold in prepared.folds:
        train, dev, test = (
            {speaker[k] for k in keys} for keys in (fold.train, fold.dev, fold.test)
        )
        assert not (train & dev or train & test or dev & test)
