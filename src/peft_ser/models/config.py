"""What model to build: a backbone, a PEFT method with its options, the head and its outputs.

The option keys are the methods' own (`peft_ser.models.tuning`): each method declares them in
its options model and `ModelConfig` takes them as flat keys (``lora_rank``, ``adapter_dim``, ...),
the spelling configs, ``--set model.<key>`` and saved models have always used. A key given with
a value other than its default must be an option of the configured method; `method_options`
hands the method its options, validated by its own model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationInfo, create_model, field_validator, model_validator

from peft_ser.data.manifest import PAPER4
from peft_ser.models.backbones.registry import (
    BACKBONES,
    BackboneError,
    encoder_layers,
    resolve_backbone,
)
from peft_ser.models.tuning.lora import check_layered_tuner
from peft_ser.models.tuning.registry import (
    METHODS,
    SPECS,
    methods_taking,
    option_fields,
    resolve_method,
)
from peft_ser.utils.errors import match_name
from peft_ser.utils.settings import MAX_SIZE, ConfigError, StrictModel

OPTION_KEYS = tuple(option_fields())
"""Every method's option keys, in the order configs list them."""

SAVED_OPTION_KEYS = frozenset(
    ("lora_rank", "lora_alpha", "lora_dropout", "lora_targets", "peft_config", "adapter_dim",
     "prompt_length")
)  # fmt: skip
"""The option keys every saved config holds: `SERModel.save` and a run's ``config.yaml`` write
every key, these seven since before methods owned their options. Older versions accepted another
method's options and ignored them, so a document holding all seven is read with the keys that
are not its method's options left out (they had no effect), and loads as it always did."""


def _method_names() -> str:
    return ", ".join(
        f"{spec.name} (alias {', '.join(spec.names[1:])})" if spec.names[1:] else spec.name
        for spec in SPECS
    )


class _BackboneAndMethod(StrictModel):
    backbone: str = Field(
        "whisper-tiny",
        description="registry name, Hugging Face hub id, local directory, or ct2:<dir>",
    )
    method: str = Field("lora", description=_method_names())


if TYPE_CHECKING:
    _WithMethodOptions = _BackboneAndMethod
else:
    _WithMethodOptions = create_model(
        "_WithMethodOptions",
        __base__=_BackboneAndMethod,
        __module__=__name__,
        **{key: (field.annotation, field) for key, field in option_fields().items()},
    )


class ModelConfig(_WithMethodOptions):
    """What to build: a backbone, a PEFT method with its options, and the head's label set."""

    head_dim: int = Field(256, ge=1, le=MAX_SIZE)
    labels: list[str] = Field(
        default_factory=lambda: list(PAPER4),
        min_length=1,
        description="class names, filled from the prepared corpus; at least 2 unless the task "
        "is attributes (a corpus without class labels has one, none)",
    )
    task: Literal["categorical", "attributes", "multitask", "distribution"] | None = Field(
        None,
        description="what the head predicts: class labels, attribute values (arousal, "
        "valence, dominance), both, or the annotators' vote distribution over the labels; "
        "None: what the prepared corpus was prepared for",
    )
    attributes: list[str] = Field(
        default_factory=list, description="attribute outputs, filled from the prepared corpus"
    )
    whisper_window: Literal["crop", "pad30"] = Field(
        "crop",
        description="crop: encode only the clip's frames (fast, the paper's choice); "
        "pad30: pad to Whisper's 30-s training window",
    )
    tune_layers: int | None = Field(
        None,
        ge=1,
        le=MAX_SIZE,
        description="adapt only the top k encoder layers (1 to the backbone's layers); the front "
        "end and the layers below run as a fixed feature extractor (eval mode, no gradients), "
        "whose states the feature cache can keep; null: every layer",
    )

    @model_validator(mode="after")
    def _classes_to_tell_apart(self) -> ModelConfig:
        if self.task != "attributes" and len(self.labels) < 2:
            raise ValueError(
                f"model.labels {self.labels}: a classifier needs at least 2 classes (one is "
                "enough only for model.task attributes)"
            )
        return self

    @field_validator("labels", "attributes")
    @classmethod
    def _distinct_names(cls, names: list[str]) -> list[str]:
        """Two outputs of one name would split its probability (they would not sum to 1 by
        name); names that differ only in case or surrounding spaces are one class too."""
        seen: dict[str, str] = {}
        for name in names:
            if not name.strip():
                raise ConfigError(f"{names}: an empty name")
            key = name.strip().casefold()
            if key in seen:
                if seen[key] == name:
                    raise ConfigError(f"{names}: {name!r} is listed twice; give each name once")
                raise ConfigError(
                    f"{names}: {seen[key]!r} and {name!r} differ only in case or spaces, so "
                    "they are one class; give each name once"
                )
            seen[key] = name
        return names

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        """The registry's spelling of a named backbone; a misspelt name is refused here, with
        the closest name, before anything is built or fetched (no weights, no network)."""
        resolved = resolve_backbone(value)
        _check_backbone_folder(resolved)
        return resolved

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        return resolve_method(value)

    @model_validator(mode="before")
    @classmethod
    def _saved_options_of_other_methods(cls, document: Any) -> Any:
        """A saved config without the keys that are not its method's options (see
        `SAVED_OPTION_KEYS`)."""
        if not isinstance(document, dict) or not document.keys() >= SAVED_OPTION_KEYS:
            return document
        method = match_name(
            str(document.get("method", cls.model_fields["method"].default)), METHODS
        )
        if method is None:
            return document  # the method's own error says what is wrong
        own = METHODS[method].options.model_fields
        return {
            key: value for key, value in document.items() if key in own or key not in OPTION_KEYS
        }

    @field_validator(*OPTION_KEYS)
    @classmethod
    def _an_option_of_the_method(cls, value: Any, info: ValidationInfo) -> Any:
        """The method's own options are checked by its options model; another method's option
        is refused unless it keeps its default (``adapter_dim: 64`` under ``method: lora`` was
        once ignored in silence: the run's config named a setting its model never had)."""
        method = info.data.get("method")
        key = info.field_name
        if method is None or key is None:
            return value  # the method was refused: that error is the one to read
        spec = METHODS[method]
        if key in spec.options.model_fields:
            return spec.check_option(key, value)
        if value != cls.model_fields[key].default:
            raise ConfigError(
                f"not an option of method {method!r} ({spec.describe_options()}); {key} is an "
                f"option of {', '.join(methods_taking(key))}"
            )
        return value

    @field_validator("tune_layers", mode="before")
    @classmethod
    def _a_count_of_layers(cls, value: Any) -> Any:
        """``true`` would read as 1 layer."""
        if isinstance(value, bool):
            raise ConfigError(f"{value!r} is not a number of layers; give k, to adapt the top k")
        return value

    @field_validator("tune_layers")
    @classmethod
    def _layers_the_method_adapts(cls, value: int | None, info: ValidationInfo) -> int | None:
        """Top layers of a method that adapts layers, no more than a registry backbone has
        (any other backbone is checked when it is built, `Backbone.adapt_top`)."""
        method, backbone = info.data.get("method"), info.data.get("backbone")
        if value is None or method is None or backbone is None:
            return value  # unset, or the method or backbone was refused: read that error
        if not METHODS[method].by_layer:
            raise ConfigError(
                f"method {method!r} adapts no layer (it trains the head alone); leave "
                "tune_layers unset"
            )
        layers = encoder_layers(backbone)
        if layers is not None and value > layers:
            raise ConfigError(
                f"{value} layers, but {backbone} has {layers} encoder layers; give 1 to {layers}"
            )
        if method == "peft" and info.data.get("peft_config") is not None:
            check_layered_tuner(info.data["peft_config"])
        return value

    @property
    def method_options(self) -> StrictModel:
        """The method's options, validated by its own model: what its function receives."""
        spec = METHODS[resolve_method(self.method)]
        values = {key: getattr(self, key) for key in spec.options.model_fields}
        return spec.options.model_validate(values)


def saved_keys(method: object) -> list[str]:
    """The keys a complete saved config of ``method`` holds: every setting but the options of
    other methods (an option that came with a newer method is absent from models saved before,
    and means nothing to them); every option key when ``method`` names no method."""
    name = match_name(str(method), METHODS)
    own = METHODS[name].options.model_fields if name is not None else OPTION_KEYS
    return [key for key in ModelConfig.model_fields if key in own or key not in OPTION_KEYS]


def _check_backbone_folder(source: str) -> None:
    """A backbone given as a folder must hold a model: a Hugging Face checkpoint
    (``config.json``) or a CTranslate2 one (``model.bin``). Any other folder (``../../etc``)
    would fail deep inside transformers without naming the setting."""
    folder = Path(source)
    if source in BACKBONES or not folder.is_dir():
        return
    if (folder / "config.json").is_file() or (folder / "model.bin").is_file():
        return
    hint = (
        " (it is a peft-ser model: give the backbone it was trained on)"
        if (folder / "peft_ser_config.json").is_file()
        else ""
    )
    raise BackboneError(
        f"backbone {source!r}: the folder holds no model (no config.json or model.bin){hint}; "
        "give a registry name, a hub id (org/name), a checkpoint folder or ct2:<dir>"
    )
