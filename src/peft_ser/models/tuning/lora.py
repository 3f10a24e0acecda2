"""LoRA and every other injectable tuner of the ``peft`` library.

``lora`` puts low-rank updates on the two feed-forward projections of every encoder layer, as the
paper did. Its default ``lora_alpha = 1`` gives the scaling ``1 / r`` of loralib's defaults, which
the paper used. ``peft`` runs any tuner given as a config dict (``peft_type`` plus its options):
DoRA (``use_dora``), IA3, LoHa, LoKr, ... Tuners that keep state shared across layers (VeRA) or
schedule ranks during training (AdaLoRA) need peft's own model wrapper and are not injectable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from peft import LoraConfig, get_peft_config, inject_adapter_in_model
from peft.config import PeftConfig

from peft_ser.models.backbones import Backbone
from peft_ser.models.tuning.registry import register
from peft_ser.utils.errors import InvalidRequestError

if TYPE_CHECKING:
    from peft_ser.models.config import ModelConfig


def lora_config(backbone: Backbone, config: ModelConfig) -> LoraConfig:
    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,  # type: ignore[arg-type]  # peft scales by any number
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_targets or backbone.lora_targets),
    )


def inject(backbone: Backbone, peft_config: PeftConfig) -> None:
    """Insert the tuner's modules into the pre-trained model; only they become trainable."""
    if getattr(peft_config, "is_prompt_learning", False):
        raise ValueError(
            f"peft tuner {peft_config.peft_type} is a prompt-learning method for token inputs; "
            "use method 'embedding_prompt' for speech encoders"
        )
    inject_adapter_in_model(peft_config, backbone.model)


@register("lora")
def lora(backbone: Backbone, config: ModelConfig) -> None:
    inject(backbone, lora_config(backbone, config))


@register("peft")
def any_peft_tuner(backbone: Backbone, config: ModelConfig) -> None:
    if not config.peft_config:
        raise InvalidRequestError(
            "model.peft_config: method 'peft' needs a peft tuner config, e.g. "
            "{peft_type: IA3, target_modules: [fc1, fc2], feedforward_modules: [fc2]}"
        )
    options = dict(config.peft_config)
    try:
        peft_config = get_peft_config(options)
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidRequestError(
            f"model.peft_config: not a peft tuner config ({type(error).__name__}: {error})"
        ) from None
    if getattr(peft_config, "target_modules", "absent") is None:
        peft_config.target_modules = set(backbone.lora_targets)  # type: ignore[attr-defined]
    inject(backbone, peft_config)
