"""The Interspeech 2025 challenge protocol of MSP-Podcast: the organisers' eight classes in
their order, Train / Development, the unlabelled test files outside every fold."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from _podcast_detailed import DETAILED_ROWS, build_release

from peft_ser.config import load_run_config
from peft_ser.corpora import prepare_corpus
from peft_ser.data.manifest import PreparedCorpus


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedCorpus:
    root = tmp_path_factory.mktemp("release")
    corpus = build_release(root / "in", {"labels_detailed.csv": DETAILED_ROWS})
    return prepare_corpus(
        "msp-podcast", corpus, root / "out", labels="challenge8", protocol="challenge2025"
    )


def test_the_classes_are_the_organisers_in_their_order(prepared: PreparedCorpus) -> None:
    # msplabresearch/MSP-Podcast_Challenge_IS2025, process_labels_for_categorical.py
    assert prepared.labels == [
        "Angry", "Sad", "Happy", "Surprise", "Fear", "Disgust", "Contempt", "Neutral",
    ]  # fmt: skip


def test_one_fold_trains_on_train_and_is_picked_and_scored_on_development(
    prepared: PreparedCorpus,
) -> None:
    (fold,) = prepared.folds
    assert fold.name == "development"
    # Train rows of the eight classes (0101_0002 is X, no agreement)
    assert fold.train == [
        "MSP-PODCAST_0101_0001", "MSP-PODCAST_0102_0001", "MSP-PODCAST_0103_0001",
        "MSP-PODCAST_0104_0001",
    ]  # fmt: skip
    assert fold.dev == ["MSP-PODCAST_0201_0001", "MSP-PODCAST_0201_0002"]
    assert fold.test == fold.dev


def test_test_rows_stay_out_of_the_fold_and_unlabelled_test_files_are_reported(
    prepared: PreparedCorpus,
) -> None:
    sessions = {u.key: u.session for u in prepared.manifest}
    assert sessions["MSP-PODCAST_0301_0001"] == "Test1"
    assert sessions["MSP-PODCAST_0400_0001"] == "Test3"
    with open(prepared.directory / "report.csv", newline="") as handle:
        report = {row["key"]: (row["reason"], row["detail"]) for row in csv.DictReader(handle)}
    assert report["MSP-PODCAST_test3_0001"][0] == "unlabelled_audio"
    assert report["MSP-PODCAST_test3_0002"] == ("unknown_label", "label ''")
    assert report["MSP-PODCAST_0101_0002"] == ("no_agreement", "label 'X'")


def test_the_summary_names_macro_f1_and_says_test_is_dev(prepared: PreparedCorpus) -> None:
    summary = json.loads((prepared.directory / "summary.json").read_text())
    assert summary["headline_metric"] == "macro_f1"
    assert "scored there (test = dev" in summary["protocol_description"]
    assert prepared.speaker_leakage == (
        "protocol challenge2025 shares speakers across splits: 1 of 1 folds share speakers "
        "between dev and train/test; test scores overstate how well a model does on speakers "
        "it has never heard"
    )


@pytest.mark.parametrize("dev_name", ["Development", "Validation"])
def test_an_older_release_calls_the_dev_set_validation(tmp_path: Path, dev_name: str) -> None:
    corpus = build_release(tmp_path / "in")
    consensus = corpus / "Labels" / "labels_consensus.csv"
    consensus.write_text(consensus.read_text().replace(",Development\n", f",{dev_name}\n"))
    done = prepare_corpus("msp-podcast", corpus, tmp_path / "out", protocol="challenge2025")
    assert done.folds[0].dev == ["MSP-PODCAST_0201_0001"]  # paper4: 0201_0002 is Contempt


def test_the_shipped_config_trains_on_the_corpus_the_docs_prepare() -> None:
    config = load_run_config(
        Path(__file__).parents[2] / "configs" / "msp-podcast-challenge2025.yaml"
    )
    assert config.model.task == "categorical" and config.optim.class_weights == "inverse_frequency"
    assert (config.data.corpus, config.optim.epochs, config.data.batch_size) == (
        "prepared/msp-podcast-challenge2025", 20, 32,
    )  # fmt: skip
    assert config.optim.select_on == "macro_f1"  # the challenge's score picks the epoch
