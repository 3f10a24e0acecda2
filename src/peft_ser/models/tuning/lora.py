"""LoRA (``lora``) and every other injectable tuner of the ``peft`` library (``peft``).

``lora`` puts low-rank updates on the two feed-forward projections of every encoder layer, as the
paper did (of the top ones with ``model.tune_layers``: peft's ``layers_to_transform``, which
``peft`` sets for any tuner that has it). Its default ``lora_alpha = 1`` gives the scaling
``1 / r`` of loralib's defaults, which the paper used. ``peft`` runs any tuner given as
``peft_config``, a config dict (``peft_type`` plus its options) checked with peft's own config
classes when the config is validated: DoRA (``use_dora``), IA3, LoHa, LoKr, ... Tuners that
keep state shared across layers (VeRA) or schedule ranks during training (AdaLoRA) need peft's
own model wrapper and are not injectable. peft (and with it torch) is imported only to check a
``peft_config`` or to build a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from peft_ser.models.tuning.spec import MethodSpec
from peft_ser.utils.errors import match_name, suggest
from peft_ser.utils.settings import MAX_SIZE, ConfigError, StrictModel

if TYPE_CHECKING:
    from peft import LoraConfig
    from peft.config import PeftConfig

    from peft_ser.models.backbones import Backbone

TUNER_EXAMPLE = "{peft_type: IA3, target_modules: [fc1, fc2], feedforward_modules: [fc2]}"
NEEDS_A_TUNER = f"method 'peft' needs a peft tuner config, e.g. {TUNER_EXAMPLE}"


class LoraOptions(StrictModel):
    lora_rank: int = Field(16, ge=1, le=MAX_SIZE)
    lora_alpha: float = Field(
        1.0, gt=0, le=MAX_SIZE, description="scaling = alpha / rank; 1 = the paper"
    )
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_targets: list[str] | None = Field(
        None, description="module names for LoRA; default: the two feed-forward projections"
    )


class PeftOptions(StrictModel):
    peft_config: dict[str, Any] | None = Field(
        None,
        validate_default=True,  # method 'peft' without one is refused, not built
        description="a peft tuner config as a dict with peft_type, for method 'peft' (peft's "
        "target_modules default: the backbone's LoRA targets)",
    )

    @field_validator("peft_config")
    @classmethod
    def _a_peft_tuner(cls, value: dict[str, Any] | None) -> dict[str, Any]:
        """The tuner config with peft_type as peft spells it, checked now rather than when the
        model is built (a typo would otherwise surface minutes into a run, or in a sweep)."""
        if value is None:
            raise ConfigError(NEEDS_A_TUNER)
        kind = tuner_config(value).peft_type
        return {**value, "peft_type": getattr(kind, "value", kind)}  # the enum's text, for YAML


def tuner_config(options: Mapping[str, Any]) -> PeftConfig:
    """peft's config object for ``options``; a `ConfigError` naming the problem otherwise.

    ``peft_type`` is matched ignoring case (``ia3``) and an unknown option is named with the
    closest of the tuner's options. Prompt-learning tuners (prompt tuning, prefix tuning, ...)
    are refused: they prepend tokens to a language model's input, which speech encoders lack.
    """
    import dataclasses

    from peft import PEFT_TYPE_TO_CONFIG_MAPPING

    classes = {
        kind.value: config_class for kind, config_class in PEFT_TYPE_TO_CONFIG_MAPPING.items()
    }
    known = ", ".join(sorted(classes))
    if "peft_type" not in options:
        raise ConfigError(
            f"not a peft tuner config: no peft_type among its keys {sorted(map(str, options))} "
            f"(peft_type: one of {known})"
        )
    given = str(options["peft_type"])
    kind = match_name(given, classes)
    if kind is None:
        raise ConfigError(
            f"not a peft tuner config: unknown peft_type {given!r}{suggest(given, classes)}; "
            f"known: {known}"
        )
    config_class = classes[kind]
    fields = [field.name for field in dataclasses.fields(config_class)]
    for key in options:
        if key not in fields:
            raise ConfigError(
                f"not a peft tuner config: {kind} has no option {key!r}{suggest(key, fields)}"
            )
    try:
        config = config_class(**{**options, "peft_type": kind})
    except (TypeError, ValueError, KeyError) as error:
        raise ConfigError(
            f"not a peft tuner config ({kind}: {type(error).__name__}: {error})"
        ) from None
    if config.is_prompt_learning:
        raise ConfigError(
            f"peft tuner {kind} is a prompt-learning method for token inputs; use method "
            "'embedding_prompt' for speech encoders"
        )
    return config


LAYER_KEYS = ("layers_to_transform", "layers_pattern")
"""peft's options that choose layers: ``model.tune_layers`` sets them."""


def check_layered_tuner(options: Mapping[str, Any]) -> None:
    """Refuse, in one line, a tuner config that ``model.tune_layers`` cannot restrict to the
    top layers: a tuner without ``layers_to_transform`` (IA3, ...), one that chooses its layers
    itself, or ``target_modules`` given as a regular expression (peft ignores the layers then).
    """
    config = tuner_config(options)
    kind = getattr(config.peft_type, "value", config.peft_type)
    given = [key for key in LAYER_KEYS if options.get(key) is not None]
    if given:
        raise ConfigError(
            f"the peft_config sets {', '.join(given)}: choose the layers there or with "
            "tune_layers, not both"
        )
    if not hasattr(config, "layers_to_transform"):
        raise ConfigError(
            f"peft tuner {kind} cannot be restricted to layers (it has no layers_to_transform); "
            "leave tune_layers unset, or use a tuner that has it (LORA, LOHA, LOKR, ...)"
        )
    if isinstance(getattr(config, "target_modules", None), str):
        raise ConfigError(
            "the peft_config gives target_modules as a regular expression, which peft applies "
            "to every layer; give module names (e.g. [fc1, fc2]) to use tune_layers"
        )


def _layers(backbone: Backbone) -> dict[str, Any]:
    """peft's layer options for the backbone's tuned layers (none when it tunes every layer)."""
    if backbone.tuned_from is None:
        return {}
    return {
        "layers_to_transform": list(backbone.tuned_layers),
        "layers_pattern": backbone.layers_pattern,
    }


def lora_config(backbone: Backbone, options: LoraOptions) -> LoraConfig:
    from peft import LoraConfig

    return LoraConfig(
        r=options.lora_rank,
        lora_alpha=options.lora_alpha,  # type: ignore[arg-type]  # peft scales by any number
        lora_dropout=options.lora_dropout,
        target_modules=list(options.lora_targets or backbone.lora_targets),
        **_layers(backbone),
    )


def inject(backbone: Backbone, peft_config: PeftConfig) -> None:
    """Insert the tuner's modules into the pre-trained model; only they become trainable."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(peft_config, backbone.model)


def lora(backbone: Backbone, options: LoraOptions) -> None:
    inject(backbone, lora_config(backbone, options))


def any_peft_tuner(backbone: Backbone, options: PeftOptions) -> None:
    assert options.peft_config is not None, "PeftOptions refuses a missing peft_config"
    peft_config = tuner_config({**options.peft_config, **_layers(backbone)})
    if getattr(peft_config, "target_modules", "absent") is None:
        peft_config.target_modules = set(backbone.lora_targets)  # type: ignore[attr-defined]
    inject(backbone, peft_config)


LORA = MethodSpec(("lora",), LoraOptions, lora)
PEFT = MethodSpec(("peft",), PeftOptions, any_peft_tuner)
