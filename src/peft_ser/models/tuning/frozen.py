"""No PEFT: the backbone stays frozen (``frozen``, alias ``finetune`` as in the paper) or trains
entirely (``full``). Neither has options."""

from __future__ import annotations

from typing import TYPE_CHECKING

from peft_ser.models.tuning.spec import MethodSpec, NoOptions

if TYPE_CHECKING:
    from peft_ser.models.backbones import Backbone


def frozen(backbone: Backbone, options: NoOptions) -> None:
    """Only the head trains; the backbone is a fixed feature extractor."""


def full(backbone: Backbone, options: NoOptions) -> None:
    """Every backbone weight trains (the upper bound PEFT methods are compared with)."""
    backbone.requires_grad_(True)


FROZEN = MethodSpec(("frozen", "finetune"), NoOptions, frozen)
FULL = MethodSpec(("full",), NoOptions, full)
