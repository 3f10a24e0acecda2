"""A model as a Hugging Face Hub repository: ``peft-ser export --format hub`` and ``peft-ser push``.

The exported folder is what the Hub shares and what `load_model("org/name")` reads back:

    peft_ser_config.json, trainable.safetensors   the model, as `SERModel.save` writes it
    README.md                                     the model card (`peft_ser.export.model_card`)
    config.json, peft_ser_pipeline.py             transformers' view: labels, and the classes
                                                  its audio-classification pipeline runs
                                                  (`peft_ser.export.hub_pipeline`)
    confusion.png                                 the fold's test confusion, when it has one

The model is read through `load_model` (so a zoo name or a repo id exports too, and a damaged
folder is refused before anything is written) and saved again, never copied file by file. A
run's fold (``run/fold-X`` or its ``model``) adds what the run recorded: its recipe and the
test scores of every fold. Uploading goes through huggingface_hub's `HfApi` alone, which finds
the token where the Hub's tools keep it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from peft_ser.export import hub_pipeline
from peft_ser.export.model_card import CardFacts, classes, model_card
from peft_ser.inference.hub import is_repo_id
from peft_ser.inference.loading import load_model
from peft_ser.models.ser_model import CONFIG_FILE, WEIGHTS_FILE, SERModel
from peft_ser.runs.layout import MODEL, RunDir, read_json
from peft_ser.utils.errors import UserError
from peft_ser.utils.fileio import output_folder, storage_errors, write_atomic

README = "README.md"
CODE_FILE = "peft_ser_pipeline.py"
HF_CONFIG = "config.json"
CONFUSION = "confusion.png"
WRITTEN = frozenset({CONFIG_FILE, WEIGHTS_FILE, README, CODE_FILE, HF_CONFIG, CONFUSION})
"""Every file an export writes: a folder holding only these may be exported into again."""


class HubExportError(UserError, ValueError):
    """A model that cannot be exported or pushed as asked; the message says why."""


@dataclass(frozen=True)
class Origin:
    """Where a model comes from: what `load_model` reads, and the run fold around it if any."""

    model: str
    fold: Path | None = None
    run: RunDir | None = None


def find_origin(source: str) -> Origin:
    """The model ``source`` names and its fold and run, when it is (in) a run's fold folder."""
    path = Path(source)
    if not path.is_dir():
        return Origin(source)
    if RunDir(path).is_run:
        folds = [fold.path.name for fold in RunDir(path).fold_dirs() if fold.has_model]
        raise HubExportError(
            f"{path}: a run holds one model per fold; export one fold's folder "
            f"({', '.join(str(path / name) for name in folds) or 'none has a model yet'})"
        )
    if (path / MODEL / CONFIG_FILE).is_file():
        fold = path
    elif path.name == MODEL and (path.parent / "results.json").exists():
        fold = path.parent
    else:
        return Origin(source)
    run = RunDir(fold.parent)
    return Origin(str(fold / MODEL), fold, run if run.is_run else None)


def card_facts(origin: Origin, name: str, license: str | None, repo_id: str | None) -> CardFacts:
    """What the run recorded about the model: recipe, each fold's test scores, their mean."""
    facts = CardFacts(name=name, license=license, repo_id=repo_id)
    if origin.fold is None:
        return facts
    fold_results = origin.fold / "results.json"
    own = _results(fold_results) if fold_results.is_file() else None
    if origin.run is None:
        return _with(facts, fold_test=own, folds=[own] if own else [])
    run = origin.run
    mean_std = None
    if run.complete:
        overall = _mapping(read_json(run.results), run.results).get("overall", {})
        mean_std = overall.get("mean_std") if isinstance(overall, dict) else None
    return _with(
        facts,
        run=run.read_config(),
        fold=None if own is None else str(own["fold"]),
        fold_test=own,
        folds=[_mapping(fold, run.results) for fold in run.fold_results()],
        mean_std=mean_std,
    )


def export_hub(
    source: str,
    out: str | os.PathLike[str],
    *,
    license: str | None = None,
    repo_id: str | None = None,
    backbone: str | None = None,
    cache_folder: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``source`` (a saved model, a run's fold, a zoo name, a repo id) as a Hub folder.

    Raises `HubExportError` for a run folder (which fold?), a folder holding other files
    (they would be uploaded too) and a license that is not one word; `load_model`'s errors
    for a model that cannot be loaded. Nothing is written before the model has loaded.
    """
    if license is not None and (not license.strip() or any(c.isspace() for c in license)):
        raise HubExportError(f"license {license!r}: give the Hub's license id (e.g. mit)")
    if repo_id is not None and not is_repo_id(repo_id):
        raise HubExportError(f"repo {repo_id!r}: give a Hub repo id, org/name")
    directory = output_folder(out, "--out")
    _check_empty(directory)
    origin = find_origin(source)
    model = load_model(origin.model, "cpu", cache_folder=cache_folder, backbone=backbone)
    name = repo_id.split("/")[-1] if repo_id else _name(source, origin)
    facts = card_facts(origin, name, license, repo_id)
    confusion = origin.fold / CONFUSION if origin.fold is not None else None
    has_confusion = confusion is not None and confusion.is_file()
    if has_confusion:
        facts = _with(facts, confusion=CONFUSION)
    with storage_errors("free space or choose another --out"):
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new-", dir=directory.parent))
        try:
            model.save(staging)
            if classes(model):
                write_atomic(staging / HF_CONFIG, json.dumps(transformers_config(model), indent=2))
                shutil.copyfile(hub_pipeline.__file__, staging / CODE_FILE)
            if has_confusion and confusion is not None:
                shutil.copyfile(confusion, staging / CONFUSION)
            write_atomic(staging / README, str(model_card(model, facts)))
            _move_into(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return directory


def _move_into(staging: Path, directory: Path) -> None:
    """Every file of a complete export renamed into ``directory`` (same disk: no copy can fail
    half-way), so a full disk or a crash while writing leaves ``directory`` as it was."""
    directory.mkdir(exist_ok=True)
    for path in staging.iterdir():
        os.replace(path, directory / path.name)


def transformers_config(model: SERModel) -> dict[str, Any]:
    """``config.json``: the labels, and where transformers finds the model and pipeline code."""
    module = Path(CODE_FILE).stem
    labels = model.labels[: classes(model)]
    return {
        "model_type": hub_pipeline.PeftSerConfig.model_type,
        "architectures": [hub_pipeline.PeftSerForAudioClassification.__name__],
        "auto_map": {
            "AutoConfig": f"{module}.{hub_pipeline.PeftSerConfig.__name__}",
            "AutoModelForAudioClassification": (
                f"{module}.{hub_pipeline.PeftSerForAudioClassification.__name__}"
            ),
        },
        "custom_pipelines": {
            "audio-classification": {
                "impl": f"{module}.{hub_pipeline.PeftSerAudioClassificationPipeline.__name__}",
                "pt": ["AutoModelForAudioClassification"],
                "type": "audio",
            }
        },
        "id2label": dict(enumerate(labels)),
        "label2id": {label: index for index, label in enumerate(labels)},
        "sampling_rate": hub_pipeline.SAMPLE_RATE,
    }


def push_to_hub(
    source: str,
    repo_id: str,
    *,
    private: bool = False,
    license: str | None = None,
    backbone: str | None = None,
    cache_folder: str | os.PathLike[str] | None = None,
) -> str:
    """Export ``source`` to a temporary folder and upload it to ``repo_id`` (created if new);
    the commit's URL. Raises `HubExportError` with the Hub's reason when the upload fails."""
    if not is_repo_id(repo_id):
        raise HubExportError(f"repo {repo_id!r}: give a Hub repo id, org/name")
    from huggingface_hub import HfApi

    with tempfile.TemporaryDirectory(prefix="peft-ser-push-") as folder:
        export_hub(
            source,
            folder,
            license=license,
            repo_id=repo_id,
            backbone=backbone,
            cache_folder=cache_folder,
        )
        api = HfApi(library_name="peft-ser")
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                repo_type="model",
                commit_message=f"peft-ser push {Path(source).name}",
            )
        except Exception as error:  # the Hub's boundary: HTTP, auth, network
            # huggingface_hub raises its own errors, its HTTP client's and OSErrors for a
            # missing token; whichever it is, the user needs the reason in one line.
            reason = " ".join(str(error).split()) or type(error).__name__
            raise HubExportError(f"{repo_id}: upload failed ({reason})") from None
    return str(getattr(commit, "commit_url", commit))


def _check_empty(directory: Path) -> None:
    """Refuse a folder holding files an export does not write: push would upload them too."""
    if not directory.is_dir():
        return
    others = sorted(path.name for path in directory.iterdir() if path.name not in WRITTEN)
    if others:
        raise HubExportError(
            f"--out {directory}: holds {', '.join(others[:3])}, which is no part of an export; "
            "give a new or empty folder"
        )


def _name(source: str, origin: Origin) -> str:
    """The card's title: the run's and fold's names, else the source's last part."""
    if origin.fold is not None and origin.run is not None:
        return f"{origin.run.path.resolve().name}-{origin.fold.name}"
    return Path(source.rstrip("/")).resolve().name if Path(source).exists() else source


def _results(path: Path) -> dict[str, Any]:
    return _mapping(read_json(path), path)


def _mapping(document: Any, path: Path) -> dict[str, Any]:
    if not isinstance(document, dict) or ("fold" not in document and "folds" not in document):
        raise HubExportError(f"{path}: not a fold's results (no fold name)")
    return document


def _with(facts: CardFacts, **changes: Any) -> CardFacts:
    return replace(facts, **changes)
