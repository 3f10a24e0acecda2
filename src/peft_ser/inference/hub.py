"""Models shared on the Hugging Face Hub: a repo id (``org/name``) resolved to a checked folder.

A repository written by ``peft-ser export --format hub`` (or ``peft-ser push``) holds the files
`SERModel.save` writes, a model card and the code transformers' pipeline runs. It is fetched
with ``huggingface_hub.snapshot_download``, so the Hub's own cache is used and its settings
honoured: ``HF_HOME``/``HF_HUB_CACHE`` say where the cache is, ``HF_HUB_OFFLINE=1`` reads
only what is cached there, and a token is found where huggingface_hub looks for one. Only the
two files a model is are fetched, and the snapshot is refused when it holds pickled weights
(peft-ser reads safetensors only: a pickle runs code when loaded) or is not a peft-ser model.

What a model name means is decided in one order, without guessing (`model_kind`): an existing
local folder wins, then a zoo name, then a name of the Hub's ``org/name`` shape. A local folder
that happens to be called ``org/name`` is therefore always the folder; ``./org/name`` says so
explicitly, and a repo id never collides with a zoo name (those hold no ``/``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from peft_ser.utils.errors import UserError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
"""Weights saved with pickle, which can run code when loaded: refused, never read."""
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
"""The Hub's ``namespace/name`` (huggingface_hub's `validate_repo_id` rules, kept strict)."""


class HubModelError(UserError, ValueError):
    """A Hub repository that cannot be fetched or is not a loadable peft-ser model."""


def is_repo_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hub model id, ``namespace/name``.

    Paths are never taken for one: nothing absolute, starting with ``.`` or ``~``, with a
    backslash, with ``--`` or ``..`` (which the Hub refuses), or of more than two parts.
    """
    return (
        _REPO_ID.fullmatch(name) is not None
        and "--" not in name
        and ".." not in name
        and not name.endswith(".git")
    )


def model_kind(name: str, zoo_names: object) -> Literal["path", "zoo", "hub", "unknown"]:
    """What ``name`` names, in the documented order: a local folder, a zoo name, another
    path on disk (a file, refused by the loader with its reason), a Hub repo id.

    ``zoo_names`` is anything supporting ``in`` (the zoo's table).
    """
    path = Path(name)
    if path.is_dir():
        return "path"
    if name in zoo_names:  # type: ignore[operator]
        return "zoo"
    if path.exists():
        return "path"
    return "hub" if is_repo_id(name) else "unknown"


def hub_model_folder(repo_id: str, revision: str | None = None) -> Path:
    """The cached snapshot of ``repo_id`` holding a peft-ser model, fetched when not cached.

    Raises `HubModelError` (one line) for a repository that cannot be reached or found in
    the cache, one that holds pickled weights, and one that is not a peft-ser model.
    """
    from huggingface_hub import snapshot_download

    from peft_ser.models.ser_model import CONFIG_FILE, WEIGHTS_FILE

    try:
        # The two files a model is, and nothing else: a repository of another library (whose
        # weights may be gigabytes) costs nothing before it is refused.
        folder = Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=[CONFIG_FILE, WEIGHTS_FILE],
                library_name="peft-ser",
            )
        )
    except (OSError, ValueError) as error:
        raise HubModelError(_fetch_problem(repo_id, error)) from None
    check_hub_folder(folder, repo_id)
    return folder


def check_hub_folder(folder: Path, repo_id: str) -> None:
    """Refuse a snapshot with pickled weights, or one without a peft-ser model's config."""
    from peft_ser.models.ser_model import CONFIG_FILE

    pickles = sorted(
        path.name
        for path in folder.rglob("*")
        if path.suffix.lower() in PICKLE_SUFFIXES and path.is_file()
    )
    if pickles:
        raise HubModelError(
            f"{repo_id}: the repository holds pickled weights ({', '.join(pickles[:3])}); "
            "peft-ser loads safetensors only"
        )
    if not (folder / CONFIG_FILE).is_file():
        raise HubModelError(
            f"{repo_id}: not a peft-ser model ({CONFIG_FILE} is missing from the repository); "
            "share one with peft-ser push"
        )


def _fetch_problem(repo_id: str, error: Exception) -> str:
    """Why ``repo_id`` could not be had, in one line, with what to do offline."""
    from huggingface_hub import constants

    kind = type(error).__name__
    if kind in ("RepositoryNotFoundError", "GatedRepoError"):
        return f"{repo_id}: no such model on the Hugging Face Hub, or it is private or gated"
    if kind == "RevisionNotFoundError":
        return f"{repo_id}: no such revision on the Hugging Face Hub"
    mode = "HF_HUB_OFFLINE is set" if constants.HF_HUB_OFFLINE else "the Hub cannot be reached"
    return (
        f"{repo_id}: not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {mode}; "
        f"fetch it on a connected machine (hf download {repo_id}) and copy the cache, or give "
        "a local folder"
    )
