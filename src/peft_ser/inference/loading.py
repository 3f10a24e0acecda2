"""`load_model`, the one public loader: a saved model folder, a zoo name or a Hugging Face Hub
repo id, on a device, in a dtype.

It keeps the original PEFT-SER package's call, ``load_model(name, cache_folder=...)``, and adds
where the backbone is (``backbone=``) and the weights' dtype. It only decides what the name is
and where the model goes; the work is done by the loaders each source has, which it does not
repeat: `SERModel.load` reads (and checks) a saved folder, `peft_ser.zoo.load_zoo_model`
fetches, checks and converts a released model, `peft_ser.inference.hub.hub_model_folder`
fetches and checks a Hub repository's snapshot (which `SERModel.load` then reads). A name is
told apart in one order (`peft_ser.inference.hub.model_kind`): an existing local folder, then a
zoo name, then a Hub repo id (``org/name``). To run a model on onnxruntime or at a reduced
precision, `peft_ser.inference.backends.inference_model` wraps what this returns.

Devices and dtypes are checked here by name, before anything loads; torch is imported only by
the functions that need it, so ``import peft_ser`` and onnxruntime's path stay without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from peft_ser.inference.hub import hub_model_folder, model_kind
from peft_ser.inference.onnx_model import refuse_export_on_torch
from peft_ser.utils.errors import InvalidRequestError, suggest
from peft_ser.utils.precision import resolve_dtype

if TYPE_CHECKING:
    import torch

    from peft_ser.models.ser_model import SERModel

__all__ = ["InvalidRequestError", "available_devices", "load_model", "resolve_device"]

_WANTED = "give a folder written by SERModel.save, a Hub repo id (org/name) or a zoo name"


def available_devices() -> list[str]:
    """The devices this machine can run a model on: ``cpu``, then CUDA GPUs, then ``mps``."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda", *(f"cuda:{index}" for index in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The device asked for, checked against this machine; None picks CUDA when available.

    Checked up front, so ``cuda`` on a machine without a GPU fails in one line listing what is
    available, instead of deep inside the first forward pass.
    """
    import torch

    available = available_devices()
    if device is None:
        return torch.device("cuda" if "cuda" in available else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda", "mps"):
        raise InvalidRequestError(
            f"unknown device {str(device)!r}; available here: {', '.join(available)}"
            + _folder_hint(device)
        )
    if chosen.type != "cpu" and str(chosen) not in available:
        raise InvalidRequestError(
            f"device {str(device)!r} is not available on this machine; "
            f"available here: {', '.join(available)}"
        )
    return chosen


def _folder_hint(device: object) -> str:
    """The original package's second argument was the cache folder; say so for a path."""
    if isinstance(device, str) and ("/" in device or os.sep in device or Path(device).is_dir()):
        return f" (a cache folder is given as cache_folder={device!r})"
    return ""


def load_model(
    name_or_path: str | os.PathLike[str],
    device: str | torch.device | None = None,
    *,
    cache_folder: str | os.PathLike[str] | None = None,
    backbone: str | os.PathLike[str] | None = None,
    dtype: str | torch.dtype | None = None,
) -> SERModel:
    """A model in eval mode from a directory written by `SERModel.save`, a model-zoo name or
    a Hub repo id (``org/name``, fetched into Hugging Face's cache; see `peft_ser.inference.hub`
    for the order in which a name is read).

    ``device`` defaults to CUDA when available, else the CPU. ``cache_folder`` (zoo names, as in
    the original package) is where the released files are looked for and downloaded to; by
    default the peft-ser cache and then the working directory are searched. ``backbone`` is
    where the pre-trained backbone is when not at its usual place: a local folder (a hub
    mirror, a moved checkpoint), a hub id or a CTranslate2 directory. ``dtype`` is what the
    weights are stored and computed in: ``fp32`` (the default), ``fp16`` or ``bf16`` (torch's
    names and dtypes too, see `peft_ser.utils.precision`); every weight is cast to it before the
    trained weights are loaded, whatever dtype the backbone was stored in. Raises a
    `UserError` (one line: the model, the file and the problem) for an unavailable device or
    dtype, a damaged model folder, an exported ONNX folder (that runs on onnxruntime:
    `peft_ser.predict`), a Hub repository that cannot be had or is not a peft-ser model, or a
    name that is none of these.
    """
    name = os.fspath(name_or_path)
    if not name.strip():
        raise InvalidRequestError(f"model name is empty; {_WANTED}")
    target = resolve_device(device)
    compute_dtype = resolve_dtype(dtype)
    source = None if backbone is None else os.fspath(backbone)
    from peft_ser.models.ser_model import ModelFileError, SERModel
    from peft_ser.zoo import ZOO, load_zoo_model

    kind = model_kind(name, ZOO)
    if kind == "zoo":
        folder = None if cache_folder is None else Path(cache_folder)
        model = load_zoo_model(name, folder, backbone=source, dtype=compute_dtype)
        return model.to(target).eval()
    if kind == "unknown":
        raise ModelFileError(_not_a_model(name, list(ZOO)))
    path = hub_model_folder(name) if kind == "hub" else Path(name)
    refuse_export_on_torch(path)
    return SERModel.load(path, map_location=target, backbone=source, dtype=compute_dtype)


def _not_a_model(name: str, zoo_names: list[str]) -> str:
    """Why ``name`` (no file, no zoo name) names no model, and what would."""
    wanted = f"{_WANTED}: {', '.join(zoo_names)}"
    if "/" in name or os.sep in name or name.startswith((".", "~")):
        return f"{name}: no such model folder; {wanted}"
    return f"unknown model {name!r}{suggest(name, zoo_names)}; {wanted}"
