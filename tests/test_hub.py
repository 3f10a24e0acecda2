"""Sharing on the Hugging Face Hub without a network: ``export --format hub`` checked file by file
and its card field by field (parsed by huggingface_hub's own `ModelCard`), a repo id loaded
offline from a Hugging Face cache, transformers' pipeline against ``predict``, the upload up to
the `HfApi` boundary, and every refusal in one line.

`hub_cache` lays a repository out as huggingface_hub's cache does (huggingface_hub
``src/huggingface_hub/file_download.py`` and ``_snapshot_download.py``: a repo's folder is
``<cache>/models--<org>--<name>``, a revision's files lie in ``snapshots/<commit>/`` as
symlinks into ``blobs/`` and ``refs/main`` holds the commit main points to, which offline reads
resolve through).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import huggingface_hub
import pytest
import soundfile as sf
import torch
from _models import build_tiny_model
from _tones import tiny_run, tone
from huggingface_hub import HfApi, ModelCard, constants
from huggingface_hub.errors import HfHubHTTPError
from typer.testing import CliRunner

import peft_ser.export.hub as hub_module
from peft_ser.cli import app
from peft_ser.evaluation.sources import model_source
from peft_ser.export.hub import WRITTEN, HubExportError, export_hub, push_to_hub
from peft_ser.export.model_card import base_model, public_name
from peft_ser.inference.hub import HubModelError, is_repo_id, model_kind
from peft_ser.inference.loading import load_model
from peft_ser.inference.predict import predict
from peft_ser.models.ser_model import ModelFileError, SERModel
from peft_ser.runs.layout import RunDir
from peft_ser.training import train
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import StorageError
from peft_ser.zoo import ZOO

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def run_dir(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    """A finished two-fold run of the tiny model (one epoch each)."""
    out = tmp_path_factory.mktemp("hub-run") / "run"
    train(tiny_run(corpus, out, **{"data.folds": "1,2", "optim.epochs": 1}))
    return RunDir(out)


@pytest.fixture(scope="module")
def sharp_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model whose answer moves with its input (see `build_tiny_model`)."""
    model = build_tiny_model(lora_rank=4, lora_b=0.5, sharpen=30)
    return model.save(tmp_path_factory.mktemp("sharp") / "model")


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty Hugging Face cache, offline, as HF_HUB_CACHE and HF_HUB_OFFLINE=1 make it
    (huggingface_hub reads both when imported, so its constants are set too)."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    yield cache


def cache_repo(cache: Path, repo_id: str, files_from: Path | None = None) -> Path:
    """``files_from``'s files as revision `COMMIT` of ``repo_id``, main pointing to it: each
    file's content in ``blobs/<sha256>``, linked from the snapshot by a relative symlink."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for path in sorted(files_from.iterdir()) if files_from is not None else []:
        blob = repo / "blobs" / hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copyfile(path, blob)
        (snapshot / path.name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


CLIPS = [(150.0, 0.05, 2.0), (1200.0, 0.5, 14.0), (600.0, 0.5, 9.0), (300.0, 0.05, 5.0)]
"""Pitch, amplitude and syllable rate of clips `sharp_model_dir` does not answer alike."""


def clip(path: Path, which: int = 0, rate: int = 22_050) -> Path:
    """Clip ``which`` of `CLIPS`, 1.5 s at ``rate`` (not the models' 16 kHz)."""
    hz, amplitude, syllables = CLIPS[which]
    wave = tone(1.5, hz, rate=rate, amplitude=amplitude, syllables=syllables, noise=0.01)
    sf.write(path, wave, rate)
    return path


def logits(model: SERModel) -> torch.Tensor:
    waveforms = torch.randn(2, 16_000, generator=torch.Generator().manual_seed(3)) * 0.1
    with torch.no_grad():
        return model(waveforms, torch.tensor([16_000, 11_000]))


# --- the exported folder and its card -------------------------------------------------------


@pytest.mark.slow
def test_a_folds_card_holds_the_runs_scores_field_by_field(run_dir: RunDir, tmp_path: Path):
    out = export_hub(str(run_dir.path / "fold-fold1"), tmp_path / "hub", license="mit")
    assert {path.name for path in out.iterdir()} == WRITTEN
    card = ModelCard.load(out / "README.md")
    data = card.data
    assert data.library_name == "peft-ser" and data.pipeline_tag == "audio-classification"
    assert data.license == "mit" and data.model_name == "run-fold-fold1"
    assert data.base_model is None  # random tiny weights come from nowhere on the Hub
    assert data.tags == ["speech-emotion-recognition", "peft", "frozen", "wavlm"]
    assert data.datasets is None
    document = json.loads(run_dir.results.read_text())
    folds, means = document["folds"], document["overall"]["mean_std"]
    expected = {}
    for fold in folds:
        for key, kind in (("uar", "recall"), ("accuracy", "accuracy"), ("macro_f1", "f1")):
            expected[(fold["fold"], kind)] = round(fold["test"][key], 4)
            expected[("mean over 2 folds", kind)] = round(means[key]["mean"], 4)
    found = {(r.dataset_config, r.metric_type): r.metric_value for r in data.eval_results}
    assert found == expected
    corpus = Path(run_dir.read_config().data.corpus)  # tones<N>/prepared
    assert {r.dataset_name for r in data.eval_results} == {corpus.parent.name}
    assert {r.dataset_split for r in data.eval_results} == {"test"}
    assert {r.task_type for r in data.eval_results} == {"audio-classification"}
    interval = folds[0]["test"]["uar_ci95"]
    assert f"| fold1 (this model) | {folds[0]['test']['n']} |" in card.text
    assert f"{interval[0]:.3f}–{interval[1]:.3f}" in card.text
    assert "![test confusion of fold1](confusion.png)" in card.text
    assert f"- corpus: `{corpus.parent.name}`; folds: 1, 2" in card.text
    assert str(run_dir.path.parent) not in str(card)  # no local path is published
    config = json.loads((out / "config.json").read_text())
    labels = json.loads(
        (run_dir.path / "fold-fold1" / "model" / "peft_ser_config.json").read_text()
    )
    assert config["id2label"] == {str(i): label for i, label in enumerate(labels["labels"])}
    assert config["custom_pipelines"]["audio-classification"]["pt"] == [
        "AutoModelForAudioClassification"
    ]
    model = SERModel.load(out)
    assert torch.equal(logits(model), logits(SERModel.load(run_dir.path / "fold-fold1" / "model")))


@pytest.mark.slow
def test_a_folds_model_folder_exports_as_its_fold(run_dir: RunDir, tmp_path: Path) -> None:
    out = export_hub(str(run_dir.path / "fold-fold2" / "model"), tmp_path / "hub")
    card = ModelCard.load(out / "README.md")
    assert card.data.license is None and "| fold2 (this model) |" in card.text


def test_a_loose_model_gets_a_card_without_scores(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = export_hub(str(tiny_model_dir), tmp_path / "hub", repo_id="someone/tiny-ser")
    assert {path.name for path in out.iterdir()} == WRITTEN - {"confusion.png"}
    card = ModelCard.load(out / "README.md")
    assert card.data.eval_results is None and card.data.license is None
    assert card.data.model_name == "tiny-ser"
    assert "No test scores" in card.text and "Not recorded" in card.text
    assert 'load_model("someone/tiny-ser")' in card.text
    count = sum(p.numel() for p in SERModel.load(tiny_model_dir).parameters() if p.requires_grad)
    assert f"trainable parameters: {count:,} of" in card.text


def test_an_attribute_model_exports_without_a_pipeline(tmp_path: Path) -> None:
    model = build_tiny_model(task="attributes", labels=["none"], attributes=["arousal", "valence"])
    out = export_hub(str(model.save(tmp_path / "model")), tmp_path / "hub")
    assert {p.name for p in out.iterdir()} == {"README.md", "peft_ser_config.json",
                                               "trainable.safetensors"}  # fmt: skip
    card = ModelCard.load(out / "README.md")
    assert "attributes: arousal, valence" in card.text and "pipeline(" not in card.text
    assert torch.equal(logits(SERModel.load(out)), logits(SERModel.load(tmp_path / "model")))


def test_the_base_model_is_a_hub_id_only(tmp_path: Path) -> None:
    assert base_model("whisper-base") == "openai/whisper-base"
    assert base_model("wavlm-large") == "microsoft/wavlm-large"
    assert base_model("tiny-whisper") is None
    assert base_model("ct2-whisper-tiny.en") is None
    assert base_model(str(tmp_path)) is None
    assert public_name(str(tmp_path / "iemocap" / "prepared")) == "iemocap"
    assert public_name("crema_d") == "crema-d" and public_name("org/model") == "org/model"


# --- loading by repo id ---------------------------------------------------------------------


def test_a_repo_id_loads_offline_from_the_cache_with_identical_logits(
    tiny_model_dir: Path, hub_cache: Path, tmp_path: Path
) -> None:
    exported = export_hub(str(tiny_model_dir), tmp_path / "hub")
    snapshot = cache_repo(hub_cache, "someone/tiny-ser", exported)
    loaded = load_model("someone/tiny-ser", "cpu")
    assert torch.equal(logits(loaded), logits(SERModel.load(tiny_model_dir)))
    assert model_source("someone/tiny-ser", "no") == "someone/tiny-ser"
    assert snapshot.is_dir()


@pytest.mark.slow
def test_predict_takes_a_repo_id_from_hf_home_offline(
    sharp_model_dir: Path, tmp_path: Path
) -> None:
    """The real environment variables, read by a fresh process as a user sets them."""
    home = tmp_path / "hf-home"
    cache_repo(home / "hub", "someone/sharp-ser", export_hub(str(sharp_model_dir), tmp_path / "x"))
    audio = clip(tmp_path / "a.wav")
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    command = [sys.executable, "-m", "peft_ser.cli", "predict", str(audio), "-f", "json"]
    done = subprocess.run(
        [*command, "--model", "someone/sharp-ser"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    expected = predict(str(audio), model=SERModel.load(sharp_model_dir))[0].label
    assert json.loads(done.stdout)[0]["label"] == expected
    missing = subprocess.run(
        [*command, "--model", "someone/absent"], capture_output=True, text=True, env=env
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"error: someone/absent: not in the Hugging Face cache ({home / 'hub'}) and "
        "HF_HUB_OFFLINE is set; fetch it on a connected machine (hf download someone/absent) "
        "and copy the cache, or give a local folder"
    ]


def test_names_are_read_in_one_order(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    zoo_name = next(iter(ZOO))
    assert model_kind("org/name", ZOO) == "hub"
    assert model_kind(zoo_name, ZOO) == "zoo"
    for path in ("./org/name", "/abs/org", "a/b/c", "~/x", "org--a/b", "org/na..me"):
        assert model_kind(path, ZOO) == "unknown", path
    shutil.copytree(tiny_model_dir, tmp_path / "org" / "name")
    shutil.copytree(tiny_model_dir, tmp_path / zoo_name)
    assert model_kind("org/name", ZOO) == "path"  # an existing local folder wins
    assert model_kind(zoo_name, ZOO) == "path"
    assert torch.equal(logits(load_model("org/name", "cpu")), logits(SERModel.load(tiny_model_dir)))
    assert not is_repo_id("org/name/extra") and is_repo_id("my-org/my.model_1")


def one_line(error: pytest.ExceptionInfo[Exception]) -> str:
    message = str(error.value)
    assert "\n" not in message and isinstance(error.value, UserError)
    return message


def test_a_repo_that_is_not_a_peft_ser_model_is_refused(
    tiny_model_dir: Path, hub_cache: Path
) -> None:
    snapshot = cache_repo(hub_cache, "someone/other")
    (snapshot / "config.json").write_text('{"model_type": "wav2vec2"}')
    with pytest.raises(HubModelError) as refused:
        load_model("someone/other", "cpu")
    assert one_line(refused) == (
        "someone/other: not a peft-ser model (peft_ser_config.json is missing from the "
        "repository); share one with peft-ser push"
    )
    pickled = cache_repo(hub_cache, "someone/pickled", tiny_model_dir)
    torch.save({"w": torch.zeros(1)}, pickled / "pytorch_model.bin")
    with pytest.raises(HubModelError) as refused:
        load_model("someone/pickled", "cpu")
    assert one_line(refused) == (
        "someone/pickled: the repository holds pickled weights (pytorch_model.bin); "
        "peft-ser loads safetensors only"
    )
    damaged = cache_repo(hub_cache, "someone/damaged", tiny_model_dir)
    (damaged / "trainable.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(ModelFileError, match="not a readable safetensors file") as refused:
        load_model("someone/damaged", "cpu")
    one_line(refused)


def test_an_unknown_repo_offline_is_one_line(hub_cache: Path) -> None:
    with pytest.raises(HubModelError) as refused:
        load_model("someone/absent", "cpu")
    assert one_line(refused).startswith(
        f"someone/absent: not in the Hugging Face cache ({hub_cache}) and HF_HUB_OFFLINE is set"
    )
    with pytest.raises(ModelFileError, match="no such model folder; give a folder written by"):
        load_model("./someone/absent", "cpu")


# --- transformers' pipeline -----------------------------------------------------------------


@pytest.mark.slow
def test_transformers_pipeline_answers_as_predict(
    sharp_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import pipeline

    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    out = export_hub(str(sharp_model_dir), tmp_path / "hub")
    classify = pipeline("audio-classification", model=str(out), trust_remote_code=True,
                        device="cpu")  # fmt: skip
    model = SERModel.load(sharp_model_dir)
    labels = set()
    for which in range(len(CLIPS)):
        audio = clip(tmp_path / f"{which}.wav", which)
        expected = predict(str(audio), model=model)[0]
        answer = classify(str(audio))
        assert answer[0]["label"] == expected.label
        assert [a["score"] for a in answer] == sorted(expected.probabilities.values())[::-1]
        samples, rate = sf.read(audio, dtype="float32")
        as_dict = classify({"raw": samples, "sampling_rate": rate}, top_k=2)
        assert [a["label"] for a in as_dict] == [a["label"] for a in answer[:2]]
        labels.add(expected.label)
    assert len(labels) > 1  # the clips are told apart, so agreeing means something
    with pytest.raises(ValueError, match="cannot classify bytes"):
        classify(b"RIFF")


# --- pushing --------------------------------------------------------------------------------


class FakeHub:
    """`HfApi.create_repo` and `upload_folder` recorded, with what the folder held then."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.uploaded: dict[str, bytes] = {}
        hub = self

        def create_repo(self: HfApi, repo_id: str, **kwargs: Any) -> str:
            hub.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self: HfApi, **kwargs: Any) -> Any:
            hub.calls.append(("upload_folder", kwargs))
            if fail is not None:
                raise fail
            folder = Path(kwargs["folder_path"])
            hub.uploaded = {p.name: p.read_bytes() for p in folder.iterdir()}
            return huggingface_hub.CommitInfo(
                commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/{COMMIT}",
                commit_message="m",
                commit_description="",
                oid=COMMIT,
            )

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)


def test_push_exports_and_uploads_through_hfapi(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = FakeHub(monkeypatch)
    result = CliRunner().invoke(
        app, ["push", str(tiny_model_dir), "--repo", "someone/tiny-ser", "--private"]
    )
    assert result.exit_code == 0, result.output
    url = f"https://huggingface.co/someone/tiny-ser/commit/{COMMIT}"
    assert result.output == f"pushed {tiny_model_dir} to someone/tiny-ser: {url}\n"
    (create, created), (upload, uploaded) = hub.calls
    assert create == "create_repo" and created["repo_id"] == "someone/tiny-ser"
    assert created["private"] is True and created["exist_ok"] is True
    assert upload == "upload_folder" and uploaded["repo_id"] == "someone/tiny-ser"
    assert set(hub.uploaded) == WRITTEN - {"confusion.png"}
    assert (
        hub.uploaded["trainable.safetensors"]
        == (tiny_model_dir / "trainable.safetensors").read_bytes()
    )
    assert b'load_model("someone/tiny-ser")' in hub.uploaded["README.md"]
    assert not Path(uploaded["folder_path"]).exists()  # the temporary export is gone


def test_a_failed_upload_is_one_line(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch):
    request = httpx.Request("POST", "https://huggingface.co/api/someone/tiny-ser/commit/main")
    response = httpx.Response(401, request=request)
    failure = HfHubHTTPError("401 Client Error: Unauthorized\nInvalid token", response=response)
    FakeHub(monkeypatch, fail=failure)
    with pytest.raises(HubExportError) as refused:
        push_to_hub(str(tiny_model_dir), "someone/tiny-ser")
    assert one_line(refused) == (
        "someone/tiny-ser: upload failed (401 Client Error: Unauthorized Invalid token)"
    )
    hub = FakeHub(monkeypatch)
    for repo in ("tiny-ser", "a/b/c", "./x/y", "org/--x"):
        with pytest.raises(HubExportError, match="give a Hub repo id, org/name"):
            push_to_hub(str(tiny_model_dir), repo)
    assert hub.calls == []


# --- refusals of export ---------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_folder_asks_for_one_fold(run_dir: RunDir, tmp_path: Path) -> None:
    with pytest.raises(HubExportError) as refused:
        export_hub(str(run_dir.path), tmp_path / "hub")
    assert one_line(refused) == (
        f"{run_dir.path}: a run holds one model per fold; export one fold's folder "
        f"({run_dir.path / 'fold-fold1'}, {run_dir.path / 'fold-fold2'})"
    )
    assert not (tmp_path / "hub").exists()


def test_export_refusals_are_one_line_and_write_nothing(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    crowded = tmp_path / "crowded"
    crowded.mkdir()
    (crowded / "notes.txt").write_text("mine")
    with pytest.raises(HubExportError) as refused:
        export_hub(str(tiny_model_dir), crowded)
    assert "notes.txt, which is no part of an export" in one_line(refused)
    assert [p.name for p in crowded.iterdir()] == ["notes.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(StorageError, match="is a file"):
        export_hub(str(tiny_model_dir), afile)
    for license in ("", "my license"):
        with pytest.raises(HubExportError, match="give the Hub's license id"):
            export_hub(str(tiny_model_dir), tmp_path / "l", license=license)
    not_model = tmp_path / "empty"
    not_model.mkdir()
    with pytest.raises(ModelFileError, match="not a peft-ser model folder") as refused:
        export_hub(str(not_model), tmp_path / "out")
    one_line(refused)
    assert not (tmp_path / "out").exists() and not (tmp_path / "l").exists()
    again = export_hub(str(tiny_model_dir), tmp_path / "again")
    assert export_hub(str(tiny_model_dir), again) == again  # an export may be redone


@contextmanager
def tmpfs(mount: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``mount`` with ``options`` while the block runs (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a file system needs root")
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_export_into_a_read_only_folder_is_one_line(tiny_model_dir: Path, tmp_path: Path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as mount, pytest.raises(StorageError) as refused:
        export_hub(str(tiny_model_dir), mount / "hub")
    assert "read-only" in one_line(refused)


def test_a_full_disk_leaves_the_output_as_it_was(tiny_model_dir: Path, tmp_path: Path):
    """The disk fills while the card is written: the error is one line, a new output folder is
    not created, and an earlier export in it is kept whole."""
    with tmpfs(tmp_path / "small", "size=40k") as mount:
        with pytest.raises(StorageError) as refused:
            export_hub(str(tiny_model_dir), mount / "hub")
        assert "no space left" in one_line(refused)
        assert sorted(path.name for path in mount.iterdir()) == []
    earlier = export_hub(str(tiny_model_dir), tmp_path / "hub")
    before = {path.name: path.read_bytes() for path in earlier.iterdir()}

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(earlier / "README.md"))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hub_module, "write_atomic", full)
        with pytest.raises(StorageError):
            export_hub(str(tiny_model_dir), earlier)
    assert {path.name: path.read_bytes() for path in earlier.iterdir()} == before


def test_export_hub_on_the_command_line(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "hub"
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--format", "hub", "--out",
                                      str(out), "--license", "apache-2.0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"wrote {out} (hub): README.md, config.json, peft_ser_config.json, "
        "peft_ser_pipeline.py, trainable.safetensors\n"
    )
    assert ModelCard.load(out / "README.md").data.license == "apache-2.0"
    for wrong in (["--format", "hub", "--tolerance", "1e-3"], ["--license", "mit"]):
        result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--out", str(out), *wrong])
        assert result.exit_code == 2
        assert result.output.strip().startswith(f"error: {wrong[-2]} does not apply to --format")
    with pytest.raises(HubExportError, match="give a Hub repo id, org/name"):
        export_hub(str(tiny_model_dir), tmp_path / "r", repo_id="not a repo")
