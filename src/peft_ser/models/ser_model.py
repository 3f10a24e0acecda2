"""SERModel: a pre-trained speech encoder, made trainable by a PEFT method, feeding the head.

Only the small trained part is ever saved: ``save(dir)`` writes the trainable weights as
safetensors and the ``ModelConfig`` as JSON; ``load(dir)`` rebuilds the backbone from its source,
applies the same PEFT method and loads them back.

Saved models are trusted by training (resume, best epoch), evaluation and inference alike, so
both ends check them: ``save`` refuses weights with NaN or infinite values, and ``load`` turns
every way a folder can be damaged or incomplete (a missing, empty, truncated or corrupt file,
a config that is not valid JSON or lacks keys, weights that do not fit the config, an unknown
backbone or method) into one `ModelFileError` line naming the file and the problem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from peft_ser.models.backbones import BACKBONES, Backbone, build_backbone, resolve_backbone
from peft_ser.models.config import ModelConfig, saved_keys
from peft_ser.models.head import SERHead
from peft_ser.models.inputs import checked_batch, warn_nonfinite
from peft_ser.models.tasks import layout_of
from peft_ser.models.tuning import apply_method
from peft_ser.models.tuning.registry import resolve_method
from peft_ser.utils.errors import UserError, match_name
from peft_ser.utils.fileio import write_atomic_with
from peft_ser.utils.settings import TOO_DEEP, document_problem, format_validation_error

CONFIG_FILE = "peft_ser_config.json"
WEIGHTS_FILE = "trainable.safetensors"


_MOVED_BACKBONE_HINT = (
    "if the backbone is elsewhere now, give its place (load_model(..., backbone=DIR), "
    "peft-ser predict --backbone DIR)"
)


_ADDED_KEYS = {"task", "attributes", "tune_layers"}
"""Config keys newer than the first saved models, which are categorical and adapt every layer
without them."""


class WeightsError(UserError, ValueError):
    """Weights that cannot be used: non-finite values, or names or shapes the model lacks."""


class ModelFileError(UserError, ValueError):
    """A saved model folder that cannot be loaded; the message names the file and the problem."""


class SERModel(nn.Module):
    """``model(waveforms[B, T], lengths[B])`` → logits ``[B, C]`` over ``model.labels``, for
    attribute tasks followed by (or only) attribute values (see `peft_ser.models.tasks`)."""

    def __init__(self, config: ModelConfig, backbone: Backbone) -> None:
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.layout = layout_of(config)
        self.head = SERHead(
            backbone.num_layers + 1, backbone.hidden_size, self.layout.width, config.head_dim
        )

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    def encode(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All hidden states ``[L+1, B, F, D]`` and valid frames per clip (16 kHz input)."""
        if lengths is None:
            lengths = torch.full((waveforms.shape[0],), waveforms.shape[1], dtype=torch.long)
        output = self.backbone(waveforms, lengths.to(waveforms.device))
        return output.hidden_states, output.frame_lengths

    def encode_below(
        self, waveforms: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The states below the first tuned layer ``k`` ``[k+1, B, F, D]`` and valid frames per
        clip: what the feature cache keeps under ``model.tune_layers`` (see `FromStates`)."""
        return self.backbone.states_below(waveforms, lengths.to(waveforms.device))

    def forward(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | None = None,
        *,
        length: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``[B, C]`` for ``[B, T]`` (or one ``[T]``) 16 kHz float waveforms; ``lengths``
        ``[B]`` are the valid samples of each row (default: all).

        ``length`` is the original PEFT-SER package's name for ``lengths``, so its calls
        ``model(x, length=lengths)`` run unchanged. Inputs are checked like `peft_ser.predict`
        checks its own (`peft_ser.models.inputs`): integer PCM, a wrong rank, empty or
        too-short clips, lengths that do not fit, and NaN or infinite samples raise
        `InvalidRequestError`. A training step (train mode, gradients on) leaves non-finite
        samples to the training loop's guard, which refuses the step and names the clips.
        Outside training, outputs that are not finite are reported with a `RuntimeWarning`.
        """
        if length is not None:
            if lengths is not None:
                raise TypeError("give lengths or length (the same thing), not both")
            lengths = length
        training_step = self.training and torch.is_grad_enabled()
        batch, counts = checked_batch(waveforms, lengths, finite_samples=not training_step)
        logits = self.head(*self.encode(batch, counts))
        if not training_step:
            warn_nonfinite(logits)
        return logits

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a PEFT run changes: the method's parameters and the head."""
        return {
            name: parameter.detach()
            for name, parameter in self.named_parameters()
            if parameter.requires_grad
        }

    def load_trainable_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        """Load trained weights; raises `WeightsError` unless they fit this model exactly.

        Every trainable weight must be given, with its shape, and finite; nothing else may be.
        """
        expected = self.trainable_state_dict()
        missing, unexpected = expected.keys() - state.keys(), state.keys() - expected.keys()
        if missing or unexpected:
            parts = [
                f"{what} {sorted(names)[:5]}"
                for what, names in (("missing", missing), ("unexpected", unexpected))
                if names
            ]
            raise WeightsError(f"trained weights do not match this model: {', '.join(parts)}")
        for name, tensor in state.items():
            if tensor.shape != expected[name].shape:
                raise WeightsError(
                    f"weight {name!r} has shape {tuple(tensor.shape)}, this model's is "
                    f"{tuple(expected[name].shape)}"
                )
        _check_finite(state)
        self.load_state_dict(dict(state), strict=False)

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write the trained weights and the config; the pre-trained backbone is not copied.

        Raises `WeightsError` naming the weight, and writes nothing, when a trained weight holds
        NaN or infinite values: such a model would predict NaN, so a saved model never does.
        """
        directory = Path(directory)
        weights = {k: v.contiguous().cpu() for k, v in self.trainable_state_dict().items()}
        try:
            _check_finite(weights)
        except WeightsError as error:
            raise WeightsError(f"{directory}: not saved: {error}") from None
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic_with(directory / WEIGHTS_FILE, lambda path: save_file(weights, path))
        config_text = self.config.model_dump_json(indent=2)
        write_atomic_with(directory / CONFIG_FILE, lambda path: Path(path).write_text(config_text))
        return directory

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike[str],
        map_location: str | torch.device = "cpu",
        *,
        backbone: str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> SERModel:
        """Rebuild from ``save``'s output, in eval mode: the folder reader of
        `peft_ser.load_model`, which also takes zoo names and devices and dtypes by name.

        ``backbone`` says where the pre-trained backbone is now (a local directory, a hub id,
        a CTranslate2 directory) when it is not where the saved config says: a hub mirror,
        or a checkpoint folder that moved. ``dtype`` is the compute dtype (see `build_model`).
        Raises `ModelFileError` naming the file and the problem for a folder that is not a
        complete, intact saved model. The weights file is read and checked before the backbone
        is built, so a damaged folder is reported without fetching any checkpoint.
        """
        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        if not directory.is_dir():
            problem = "is a file, not a model folder" if directory.exists() else "no such folder"
            raise ModelFileError(f"{directory}: {problem}")
        if not config_path.is_file():
            raise ModelFileError(
                f"{directory}: not a peft-ser model folder ({CONFIG_FILE} is missing)"
            )
        with _reported_in(config_path):
            config, weights = _read_config(config_path, backbone)
        state = read_weights(weights_path)
        with _reported_in(config_path):
            model = build_model(config, backbone_weights=weights, dtype=dtype)
        with _reported_in(weights_path):
            model.load_trainable_state_dict(state)
        return model.to(map_location).eval()


class FromStates(nn.Module):
    """The part of ``model`` above its states below the first tuned layer (`encode_below`): the
    tuned layers and the head, so that a run on cached states computes the model's logits
    without its front end and lower layers (they have no trainable weight: `apply_method`)."""

    def __init__(self, model: SERModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, states: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
        output = self.model.backbone.from_states(states, frame_lengths)
        return self.model.head(output.hidden_states, output.frame_lengths)


@contextmanager
def _reported_in(path: Path) -> Iterator[None]:
    """Re-raise a `UserError` from inside as a `ModelFileError` that names ``path``."""
    try:
        yield
    except UserError as error:
        raise ModelFileError(f"{path}: {error}") from None


def _read_config(path: Path, backbone: str | None = None) -> tuple[ModelConfig, str | None]:
    """The ``ModelConfig`` a saved model was built from, with every key present and valid, and
    where its backbone's weights are to be read from when not from the config's source.

    ``save`` writes every key, so a missing one means the file was cut or edited: it is an
    error rather than a silent default (a default backbone or rank would load wrong weights).
    With ``backbone`` given, a registry-named backbone keeps its name (and so its family
    facts) and takes its weights from ``backbone``; any other saved source (a folder that
    moved, a hub id) is replaced by ``backbone`` before it is checked.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError("not UTF-8 text, so not a model config") from None
    except OSError as error:
        raise UserError(f"cannot read ({error.strerror})") from None
    if not text.strip():
        raise UserError("file is empty")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"not valid JSON ({error})") from None
    except RecursionError:
        raise UserError(TOO_DEEP) from None
    problem = document_problem(document)
    if problem is not None:
        raise UserError(problem)
    if not isinstance(document, dict):
        raise UserError(
            f"expected a JSON object of model settings, found {type(document).__name__}"
        )
    missing = [
        key
        for key in saved_keys(document.get("method"))
        if key not in document and key not in _ADDED_KEYS
    ]
    if missing:
        raise UserError(f"incomplete model config: missing keys {', '.join(missing)}")
    weights = None
    if backbone is not None:
        if _is_registry_backbone(str(document["backbone"])):
            weights = backbone
        else:
            document["backbone"] = backbone
    try:
        config = ModelConfig.model_validate(document)
    except ValidationError as error:
        message = _one_line(format_validation_error(error, ModelConfig))
        moved = "/" in str(document["backbone"])  # a folder or hub id, not a misspelt name
        if moved and any(problem["loc"] == ("backbone",) for problem in error.errors()):
            message += f"; {_MOVED_BACKBONE_HINT}"
        raise UserError(message) from None
    return config, weights


def _one_line(message: str) -> str:
    """``first line: item; item`` from a message of a heading and indented items."""
    heading, *items = message.splitlines()
    return f"{heading}: {'; '.join(item.strip() for item in items)}" if items else heading


def read_weights(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a weights file written by ``save``, each checked to be finite.

    Raises `ModelFileError` naming the file for a missing, empty, truncated or corrupt file or
    NaN or infinite values, where safetensors would raise a bare deserializer error.
    """
    with _reported_in(Path(path)):
        return _read_weights(Path(path))


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError("file is missing (a saved model keeps its trained weights here)")
    if path.stat().st_size == 0:
        raise UserError("file is empty (0 bytes)")
    try:
        state = load_file(path, device="cpu")
    except SafetensorError as error:
        raise UserError(
            f"not a readable safetensors file, truncated or corrupt ({error})"
        ) from None
    except OSError as error:
        raise UserError(f"cannot read ({error.strerror})") from None
    _check_finite(state)
    return state


def _check_finite(state: Mapping[str, torch.Tensor]) -> None:
    """Raise `WeightsError` naming the first weight with NaN or infinite values."""
    for name, tensor in state.items():
        bad = int((~torch.isfinite(tensor)).sum())
        if bad:
            raise WeightsError(
                f"weight {name!r} has non-finite values (NaN or inf): {bad} of {tensor.numel()}"
            )


def build_model(
    config: ModelConfig,
    pretrained: bool = True,
    *,
    backbone_weights: str | None = None,
    dtype: torch.dtype = torch.float32,
) -> SERModel:
    """Backbone from its source, PEFT method applied, fresh head, all in ``dtype``.

    ``backbone_weights`` reads the pre-trained weights from another place (see
    `build_backbone`'s ``weights``). Every weight, the backbone's, the method's and the head's,
    is cast to the compute dtype ``dtype`` before trained weights are loaded into it: a
    checkpoint stored in float16 or bfloat16 is widened exactly to float32, and float32 trained
    weights are then copied without rounding (a model cast after loading would have rounded
    them, and one left in the checkpoint's dtype would fail on its first float32 input).
    The model's config, and so what ``save`` writes, holds the registry names (see
    `with_registry_names`).
    """
    config = with_registry_names(config)
    backbone = build_backbone(
        config.backbone, config.whisper_window, pretrained=pretrained, weights=backbone_weights
    )
    apply_method(backbone, config)
    return SERModel(config, backbone).to(dtype)


def _is_registry_backbone(name: str) -> bool:
    """Whether ``name`` is a registry backbone (in any case), not a path or hub id."""
    return match_name(name, BACKBONES) is not None


def with_registry_names(config: ModelConfig) -> ModelConfig:
    """``config`` with its backbone and method as the registries spell them.

    ``Whisper-Tiny`` becomes ``whisper-tiny`` and ``LoRA`` ``lora``; a name that is neither a
    registry name nor another kind of source raises `BackboneError` or `MethodError`, without
    network or weights.
    """
    backbone, method = resolve_backbone(config.backbone), resolve_method(config.method)
    return config.model_copy(update={"backbone": backbone, "method": method})


@dataclass(frozen=True)
class ParameterCount:
    trainable: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total


def count_parameters(config: ModelConfig) -> ParameterCount:
    """Trainable and total parameters from the configs alone: no weights, no network.

    The model is built on PyTorch's meta device, so even the largest backbone costs no memory.
    """
    with torch.device("meta"):
        model = build_model(config, pretrained=False)
    return parameter_count(model)


def parameter_count(model: nn.Module) -> ParameterCount:
    parameters = list(model.parameters())
    return ParameterCount(
        sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)
    )
