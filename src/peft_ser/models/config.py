"""What model to build: a backbone, a PEFT method with its options, the head and its outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from peft_ser.data.manifest import PAPER4
from peft_ser.models.backbones.registry import BACKBONES, BackboneError, resolve_backbone
from peft_ser.models.tuning.registry import resolve_method
from peft_ser.utils.settings import MAX_SIZE, ConfigError, StrictModel


class ModelConfig(StrictModel):
    """What to build: a backbone, a PEFT method with its options, and the head's label set."""

    backbone: str = Field(
        "whisper-tiny",
        description="registry name, Hugging Face hub id, local directory, or ct2:<dir>",
    )
    method: str = Field(
        "lora",
        description="frozen (alias finetune), full, lora, adapter, adapter_l, "
        "embedding_prompt, combined, or peft (any peft tuner via peft_config)",
    )
    lora_rank: int = Field(16, ge=1, le=MAX_SIZE)
    lora_alpha: float = Field(
        1.0, gt=0, le=MAX_SIZE, description="scaling = alpha / rank; 1 = the paper"
    )
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_targets: list[str] | None = Field(
        None, description="module names for LoRA; default: the two feed-forward projections"
    )
    peft_config: dict[str, Any] | None = Field(
        None, description="a peft config as a dict with peft_type, for method 'peft'"
    )
    adapter_dim: int = Field(128, ge=1, le=MAX_SIZE, description="bottleneck width of adapters")
    prompt_length: int = Field(
        5, ge=1, le=MAX_SIZE, description="learnable prompt vectors per layer"
    )
    head_dim: int = Field(256, ge=1, le=MAX_SIZE)
    labels: list[str] = Field(
        default_factory=lambda: list(PAPER4),
        min_length=1,
        description="class names, filled from the prepared corpus; at least 2 unless the task "
        "is attributes (a corpus without class labels has one, none)",
    )
    task: Literal["categorical", "attributes", "multitask"] | None = Field(
        None,
        description="what the head predicts: class labels, attribute values (arousal, "
        "valence, dominance) or both; None: what the prepared corpus was prepared for",
    )
    attributes: list[str] = Field(
        default_factory=list, description="attribute outputs, filled from the prepared corpus"
    )
    whisper_window: Literal["crop", "pad30"] = Field(
        "crop",
        description="crop: encode only the clip's frames (fast, the paper's choice); "
        "pad30: pad to Whisper's 30-s training window",
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
