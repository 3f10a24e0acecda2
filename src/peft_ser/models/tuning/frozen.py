"""No PEFT: the backbone stays frozen (``frozen``, alias ``finetune`` as in the paper) or trains
entirely (``full``; with ``model.tune_layers``, its top layers). Neither has options."""

from __future__ import annotations

from typing import TYPE_CHECKING

from peft_ser.models.tuning.spec import MethodSpec, NoOptions

if TYPE_CHECKING:
    from peft_ser.models.backbones import Backbone


def frozen(backbone: Backbone, options: NoOptions) -> None:
    """Only the head trains; the backbone is a fixed feature extractor."""


def full(backbone: Backbone, options: NoOptions) -> None:
    """Every backbone weight trains (the upper bound PEFT methods are compared with); with
    ``model.tune_layers``, every weight of the top layers (the front end, the layers below and
    the final norm stay frozen)."""
    if backbone.tuned_from is None:
        backbone.requires_grad_(True)
        return
    for index in backbone.tuned_layers:
        backbone.layers[index].requires_grad_(True)


FROZEN = MethodSpec(("frozen", "finetune"), NoOptions, frozen, by_layer=False)
FULL = MethodSpec(("full",), NoOptions, full)
