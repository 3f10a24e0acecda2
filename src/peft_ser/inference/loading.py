"""Loading a model for inference: a saved folder or a zoo name, on a device, in a dtype.

`load_model` keeps the original PEFT-SER package's call, ``load_model(name,
cache_folder=...)``, and adds where the backbone is (``backbone=``) and the compute dtype.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from peft_ser.models.ser_model import CONFIG_FILE, WEIGHTS_FILE, ModelFileError, SERModel
from peft_ser.utils.errors import InvalidRequestError, suggest

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
"""Compute dtypes by name (``fp32``, ``fp16``, ``bf16`` and ``half`` are accepted too)."""
_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}


def available_devices() -> list[str]:
    """The devices this machine can run a model on: ``cpu``, then CUDA GPUs, then ``mps``."""
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


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """The compute dtype asked for by name or as a torch dtype; None is float32."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    name = str(dtype).removeprefix("torch.").lower()
    name = _DTYPE_ALIASES.get(name, name)
    if name not in DTYPES:
        raise InvalidRequestError(
            f"unknown dtype {str(dtype)!r}{suggest(name, DTYPES)}; give one of {', '.join(DTYPES)}"
        )
    return DTYPES[name]


def load_model(
    name_or_path: str | os.PathLike[str],
    device: str | torch.device | None = None,
    *,
    cache_folder: str | os.PathLike[str] | None = None,
    backbone: str | os.PathLike[str] | None = None,
    dtype: str | torch.dtype | None = None,
) -> SERModel:
    """A model in eval mode from a directory written by `SERModel.save` or a model-zoo name.

    ``device`` defaults to CUDA when available, else the CPU. ``cache_folder`` (zoo names, as in
    the original package) is where the released files are looked for and downloaded to; by
    default the peft-ser cache and then the working directory are searched. ``backbone`` is
    where the pre-trained backbone is when not at its usual place: a local folder (a hub
    mirror, a moved checkpoint), a hub id or a CTranslate2 directory. ``dtype`` is the compute
    dtype (``float32`` by default, or ``float16``, ``bfloat16``): every weight is cast to it
    before the trained weights are loaded, whatever dtype the backbone was stored in. Raises a
    `UserError` (one line: the model, the file and the problem) for an unavailable device or
    dtype, a damaged model folder, or a name that is neither a folder nor a zoo name.
    """
    if not os.fspath(name_or_path).strip():
        raise InvalidRequestError("model name is empty; give a saved model folder or a zoo name")
    target = resolve_device(device)
    compute_dtype = resolve_dtype(dtype)
    source = None if backbone is None else os.fspath(backbone)
    if Path(name_or_path).is_dir():
        return SERModel.load(
            name_or_path, map_location=target, backbone=source, dtype=compute_dtype
        )
    name = os.fspath(name_or_path)
    from peft_ser import zoo

    if name not in zoo.ZOO:
        raise ModelFileError(_not_a_model(name, list(zoo.ZOO)))
    folder = None if cache_folder is None else Path(cache_folder)
    model = zoo.load_zoo_model(name, folder, backbone=source, dtype=compute_dtype)
    return model.to(target).eval()


def _not_a_model(name: str, zoo_names: list[str]) -> str:
    """Why ``name`` (no directory, no zoo name) names no model, and what would."""
    wanted = f"give a folder written by SERModel.save or a zoo name: {', '.join(zoo_names)}"
    if Path(name).exists():
        return (
            f"{name}: is a file, not a model folder (which holds {CONFIG_FILE} and {WEIGHTS_FILE})"
        )
    if "/" in name or os.sep in name or name.startswith((".", "~")):
        return f"{name}: no such model folder; {wanted}"
    return f"unknown model {name!r}{suggest(name, zoo_names)}; {wanted}"
