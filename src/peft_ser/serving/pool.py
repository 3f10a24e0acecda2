"""Many models in one process, each pre-trained backbone held once.

Every served model is its own `SERModel` instance, with its own PEFT modules, hooks and head,
so one model's trained weights can never enter another's forward pass, however requests
interleave. What the models share are their frozen tensors: after a model is loaded, each
tensor that does not train and is bit-identical to one already held (same dtype, shape,
device and bytes) is replaced by that one, and the duplicate is freed. Models on the same
backbone source thus hold it once, plus their own trained weights.

Sharing by content rather than by name needs no knowledge of how a PEFT method renames
modules (peft's LoRA moves ``fc1.weight`` to ``fc1.base_layer.weight``), shares nothing that
differs (a fine-tuned backbone, another checkpoint), and cannot change an answer: a tensor is
only ever replaced by an equal one. Models load one after another, so at most one extra copy
of a backbone is in memory at a time.

Each model's runner (`inference.backends`) is made once, at start: fp32 and bf16 run the shared
modules themselves (bf16 autocasts, it copies no weights), int8 runs a merged and quantized
copy that shares nothing, and a folder written by ``peft-ser export`` runs on onnxruntime,
which holds its own weights.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath, PureWindowsPath

import torch
from torch import nn

from peft_ser.inference.backends import InferenceModel, choose_backend
from peft_ser.inference.loading import load_model
from peft_ser.inference.onnx_model import OnnxModel
from peft_ser.inference.palette import palette
from peft_ser.inference.torch_model import TorchModel
from peft_ser.models.ser_model import SERModel, parameter_count
from peft_ser.utils.errors import UserError, suggest
from peft_ser.utils.precision import resolve_precision


class UnknownModelError(UserError, LookupError):
    """A request for a model the server was not started with; the message lists those it was."""


class ModelSpecError(UserError, ValueError):
    """A ``--model`` argument that cannot name a served model (empty, a malformed NAME=SOURCE,
    or a name given twice)."""


@dataclass(frozen=True)
class ModelSpec:
    """A model to serve: the name requests use, and the saved or exported folder or zoo name it
    loads from."""

    name: str
    source: str


_NAME = re.compile(r"[\w.-]+")
"""A served model's name: letters, digits, ``_``, ``.`` and ``-`` (it goes in a URL's query)."""


def parse_model_spec(text: str) -> ModelSpec:
    """``NAME=SOURCE``, or ``SOURCE`` alone, named after its folder (or its zoo name).

    Only the first ``=`` separates, so a source may hold one (``a=runs/lr=0.1``), and a text
    whose part before the first ``=`` holds a folder separator is a source alone
    (``runs/lr=0.1/best``). Raises `ModelSpecError` naming the malformed part."""
    shown = f"--model {text!r}"
    if not text.strip():
        raise ModelSpecError(f"{shown}: empty; give a model folder, a zoo name or NAME=SOURCE")
    name, separator, source = text.partition("=")
    if not separator or "/" in name or "\\" in name:
        name, source = Path(text.rstrip("/\\")).name, text
        if not name:
            raise ModelSpecError(f"{shown}: no folder name to name the model by; use NAME=SOURCE")
        return ModelSpec(name, source)
    if not name:
        raise ModelSpecError(f"{shown}: no name before '='; use NAME=SOURCE, or SOURCE alone")
    if not _NAME.fullmatch(name):
        raise ModelSpecError(
            f"{shown}: name {name!r} may hold only letters, digits, '_', '.' and '-'"
        )
    if not source.strip():
        raise ModelSpecError(
            f"{shown}: no source after '{name}='; give a model folder or a zoo name"
        )
    return ModelSpec(name, source)


def public_source(source: str | None) -> str | None:
    """A backbone or model source as answers show it: a local path by its last part only
    (an answer never reveals the server's folders), a hub or zoo name as it is."""
    if source is None:
        return None
    local = Path(source).expanduser()
    if PurePath(source).is_absolute() or source.startswith(("~", ".")) or _exists(local):
        return local.name or source
    if PureWindowsPath(source).drive or "\\" in source:
        return PureWindowsPath(source).name
    return source


@dataclass(frozen=True)
class ServedModel:
    """A model ready to answer, the runner its requests go through, and what `GET /v1/models`
    says about it (``about``: facts gathered when it was loaded)."""

    name: str
    source: str
    runner: InferenceModel
    backend: str
    precision: str
    about: dict[str, object] = field(default_factory=dict)

    @property
    def model(self) -> SERModel | None:
        """The PyTorch module that runs (for int8 the quantized copy); None for ONNX."""
        return self.runner.model if isinstance(self.runner, TorchModel) else None

    @property
    def labels(self) -> list[str]:
        return self.runner.labels

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "labels": self.labels,
            "colours": palette(self.labels),
            "backend": self.backend,
            "precision": self.precision,
            **self.about,
        }


def _torch_facts(model: SERModel, *, shares: bool) -> dict[str, object]:
    """What `/v1/models` says about a PyTorch model, counted on the model as trained (before
    any quantization); ``shares``: whether its frozen tensors are held once with equal ones of
    other models (fp32 and bf16; not int8, which holds a quantized copy of its own)."""
    counts = parameter_count(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    return {
        "backbone": public_source(model.config.backbone),
        "method": model.config.method,
        "frozen_tensors_shareable": shares,
        "trainable_parameters": counts.trainable,
        "trainable_bytes": sum(p.numel() * p.element_size() for p in trainable),
        "total_parameters": counts.total,
    }


def _onnx_facts(model: OnnxModel) -> dict[str, object]:
    """What `/v1/models` says about an exported model: what its facts JSON names, else null
    (the graph does not tell trainable parameters from frozen ones)."""
    return {
        "backbone": public_source(_text(model.facts.get("backbone"))),
        "method": model.facts.get("method"),
        "frozen_tensors_shareable": False,
        "trainable_parameters": None,
        "trainable_bytes": None,
        "total_parameters": None,
    }


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long or with a NUL byte is no local path
        return False


def _text(value: object) -> str | None:
    return None if value is None else str(value)


_Key = tuple[torch.dtype, tuple[int, ...], str, str]


class SharedTensors:
    """Frozen tensors held once, found by their content."""

    def __init__(self) -> None:
        self._held: dict[_Key, list[torch.Tensor]] = {}

    def share_frozen(self, model: nn.Module) -> None:
        """Point every frozen parameter and buffer of ``model`` at an equal held tensor.

        A tensor with no equal one held yet is kept and held from now on. Trainable parameters
        are never touched: they are the model's own.
        """
        replaced: dict[int, torch.Tensor] = {}
        for module in model.modules():
            for slots in (module._parameters, module._buffers):
                for name, tensor in slots.items():
                    if tensor is None or tensor.requires_grad:
                        continue
                    if id(tensor) not in replaced:
                        replaced[id(tensor)] = self._held_equal(tensor)
                    slots[name] = replaced[id(tensor)]  # type: ignore[assignment]

    def _held_equal(self, tensor: torch.Tensor) -> torch.Tensor:
        raw = _bytes_view(tensor)
        key = (tensor.dtype, tuple(tensor.shape), str(tensor.device), _digest(raw))
        for held in self._held.get(key, []):
            if torch.equal(_bytes_view(held), raw):
                return held
        self._held.setdefault(key, []).append(tensor)
        return tensor


def _bytes_view(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes as a flat uint8 tensor, so equality is bitwise (``-0.0 != 0.0``)."""
    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def _digest(raw: torch.Tensor) -> str:
    return hashlib.blake2b(raw.cpu().numpy().data, digest_size=16).hexdigest()  # no copy


def release_freed_memory() -> None:
    """Hand memory freed by the process back to the system, where the C library allows it.

    A duplicate backbone freed after sharing, and the checkpoint buffers of loading, stay in
    glibc's heap and so in the process's resident size; ``malloc_trim`` returns them (with
    four models on Whisper tiny.en it took about 70 MiB off the resident size, see docs/serving.md).
    Elsewhere this does nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc (musl, ...): no trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@dataclass(frozen=True)
class MemoryUse:
    """Bytes of distinct tensor storage: held by several models, and held by one only."""

    shared_bytes: int
    private_bytes: int


class ModelPool:
    """The models a server answers for, by name; only those given at start, never others."""

    def __init__(self, models: Sequence[ServedModel]) -> None:
        self._models = {served.name: served for served in models}

    @classmethod
    def load(
        cls,
        specs: Sequence[ModelSpec],
        *,
        device: str | None = None,
        dtype: str | None = None,
        share: bool = True,
        backend: str | None = None,
        precision: str | None = None,
    ) -> ModelPool:
        """Load each model in turn and make its runner once: a PyTorch model at ``precision``,
        or an exported ONNX folder on onnxruntime (``backend`` None: by what the source is).

        With ``share``, frozen tensors equal across fp32 and bf16 PyTorch models are held once
        (see the module's docstring; bf16 autocasts without copying weights). An int8 model
        quantizes a merged copy of its own, so it shares nothing. Raises `ModelSpecError` for a
        name given twice, `InvalidRequestError` for options that cannot run a source (checked
        for every model before any loads) and the loader's `UserError` for a model that
        cannot be loaded."""
        names = [spec.name for spec in specs]
        if not specs:
            raise ModelSpecError("no model to serve; give --model FOLDER (or NAME=FOLDER)")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ModelSpecError(
                f"model name {repeated[0]!r} is given twice; name them NAME=SOURCE"
            )
        wanted = resolve_precision(precision)
        backends = [
            choose_backend(spec.source, backend, wanted, device=device, dtype=dtype)
            for spec in specs
        ]
        shared = SharedTensors()
        models = []
        for spec, chosen in zip(specs, backends, strict=True):
            if chosen == "onnxruntime":
                exported = OnnxModel(spec.source, precision=wanted)
                about = _onnx_facts(exported)
                models.append(ServedModel(spec.name, spec.source, exported, chosen, wanted, about))
                continue
            model = load_model(spec.source, device, dtype=dtype).eval()
            shares = share and wanted != "int8"
            if shares:
                shared.share_frozen(model)
            about = _torch_facts(model, shares=shares)
            runner = TorchModel(model, wanted)
            del model  # an int8 runner holds its quantized copy; the float model goes
            release_freed_memory()
            models.append(ServedModel(spec.name, spec.source, runner, chosen, wanted, about))
        return cls(models)

    @property
    def names(self) -> list[str]:
        return list(self._models)

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._models.values())

    def get(self, name: str) -> ServedModel:
        """The model called ``name``; raises `UnknownModelError` listing the served names."""
        if name not in self._models:
            raise UnknownModelError(
                f"unknown model {name!r}{suggest(name, self._models)}; "
                f"this server has: {', '.join(self._models)}"
            )
        return self._models[name]

    def memory(self) -> MemoryUse:
        """Distinct storage across all PyTorch models, split into shared and per-model bytes.

        ONNX models hold their weights in onnxruntime, not in torch tensors, and count nothing.
        """
        held = {served.name: _tensors(served.model) for served in self if served.model is not None}
        owners: dict[int, set[str]] = {}
        sizes: dict[int, int] = {}
        for name, tensors in held.items():  # all held at once: no address is freed and reused
            for tensor in tensors:
                pointer = tensor.untyped_storage().data_ptr()
                owners.setdefault(pointer, set()).add(name)
                sizes[pointer] = tensor.untyped_storage().nbytes()
        shared = sum(sizes[p] for p, names in owners.items() if len(names) > 1)
        return MemoryUse(shared, sum(sizes.values()) - shared)


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    """Parameters, buffers, and the int8 weights quantized layers keep in their state only.

    A quantized layer's weights are packed for its kernels; its state unpacks a copy of the
    same size, so the copies are counted while they are held.
    """
    packed = [
        item
        for value in model.state_dict(keep_vars=True).values()
        if isinstance(value, tuple)
        for item in value
        if isinstance(item, torch.Tensor)
    ]
    return [*model.parameters(), *model.buffers(), *packed]
