"""A released model by name: its converted weights from the cache, on its pre-trained backbone."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from peft_ser.zoo.cache import (
    CachedModel,
    cache_root,
    candidates,
    check_pinned,
    download,
    layouts,
    pins_of,
    read_converted,
    search_folders,
    sha256_of,
    source_record,
    warn_unpinned_once,
    write_converted,
)
from peft_ser.zoo.convert import convert_original_checkpoint, load_original_file
from peft_ser.zoo.table import ZooEntry, ZooError, zoo_entry

if TYPE_CHECKING:
    import torch

    from peft_ser.models.ser_model import SERModel

logger = logging.getLogger("peft_ser.zoo")


def load_zoo_state(name: str, cache_dir: str | Path | None = None) -> dict[str, torch.Tensor]:
    """A released model's head and LoRA weights in this package's names.

    The first folder (see `search_folders`) holding the model's converted weights, or both of
    the authors' files in either layout, is used; only when none does are the files downloaded.
    Load the result with ``model.load_trainable_state_dict(state)`` into
    ``build_model(ZOO[name].config)``; every returned key must be consumed.
    """
    entry = zoo_entry(name)
    for cached in candidates(entry, cache_dir):
        state = read_converted(cached, pins_of(cached, entry.files))
        if state is not None:
            return state
        if cached.has_sources:
            return _convert_cached(cached, entry)
    download(name, cache_dir)
    return _convert_cached(layouts(entry, cache_root(cache_dir))[0], entry)


def _convert_cached(cached: CachedModel, entry: ZooEntry) -> dict[str, torch.Tensor]:
    """Check the authors' files against their pins, convert them together and keep the result."""
    merged: dict[str, torch.Tensor] = {}
    records = []
    for source, file, pins in zip(
        cached.sources, entry.files, pins_of(cached, entry.files), strict=True
    ):
        seen = sha256_of(source)
        check_pinned(source, seen, pins, file.url)
        if not pins:
            warn_unpinned_once(cached, source, seen)
        part = load_original_file(source)
        if overlap := merged.keys() & part.keys():
            raise ZooError(f"{source}: keys already present in another file: {sorted(overlap)}")
        merged |= part
        records.append(source_record(source, seen))
    state = convert_original_checkpoint(merged, entry.family)
    write_converted(cached, state, records)
    return state


def cached_backbone(entry: ZooEntry, cache_dir: str | Path | None = None) -> str | None:
    """The backbone checkpoint the original package cached beside the model files, if any.

    The original called ``from_pretrained(hub_id, cache_dir=cache_folder)``, so a folder it
    used holds the backbone as a hub-cache snapshot, which loads without network.
    """
    from peft_ser.models.backbones.registry import hub_snapshot

    for folder in search_folders(cache_dir):
        snapshot = hub_snapshot(folder, entry.hub_id)
        if snapshot is not None:
            logger.info("%s: backbone %s from %s", entry.name, entry.hub_id, snapshot)
            return str(snapshot)
    return None


def load_zoo_model(
    name: str,
    cache_dir: str | Path | None = None,
    *,
    backbone: str | None = None,
    dtype: torch.dtype | None = None,
) -> SERModel:
    """A released model, built and loaded (training mode, on the CPU).

    ``backbone`` is where its pre-trained backbone is, when not at its hub id: a local folder (a
    hub mirror, ``hf download <id> --local-dir DIR``), another hub id, or a CTranslate2
    directory. Without it, a hub-cache snapshot in the searched folders is used (the original
    package left one there), else the hub id. ``dtype`` is the compute dtype (float32 default).
    """
    import torch

    from peft_ser.models.ser_model import WeightsError, build_model

    entry = zoo_entry(name)
    state = load_zoo_state(name, cache_dir)
    source = backbone or cached_backbone(entry, cache_dir)
    model = build_model(entry.config, backbone_weights=source, dtype=dtype or torch.float32)
    try:
        model.load_trainable_state_dict(state)
    except WeightsError as error:
        raise ZooError(
            f"{name}: {error}. The released weights were trained on {entry.hub_id} "
            f"({entry.num_layers} layers); give that checkpoint as the backbone "
            f"(load_model({name!r}, backbone=DIR) or peft-ser predict --backbone DIR)"
        ) from None
    return model
