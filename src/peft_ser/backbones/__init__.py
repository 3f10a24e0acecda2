"""Speech encoders by family, behind one registry of named checkpoints."""

from .base import Backbone, BackboneOutput
from .registry import (
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
