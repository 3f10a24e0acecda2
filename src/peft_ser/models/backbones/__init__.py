"""Speech encoders by family, behind one registry of named checkpoints."""

from peft_ser.models.backbones.base import Backbone, BackboneOutput
from peft_ser.models.backbones.registry import (
    BACKBONES,
    BackboneError,
    BackboneSpec,
    backbone_names,
    build_backbone,
    hub_snapshot,
    resolve_backbone,
)

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneError",
    "BackboneOutput",
    "BackboneSpec",
    "backbone_names",
    "build_backbone",
    "hub_snapshot",
    "resolve_backbone",
]
