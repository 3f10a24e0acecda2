"""Speech encoders by family, behind one registry of named checkpoints."""

from .base import Backbone, BackboneOutput
from .registry import BACKBONES, BackboneSpec, backbone_names, build_backbone

__all__ = [
    "BACKBONES",
    "Backbone",
    "BackboneOutput",
    "BackboneSpec",
    "backbone_names",
    "build_backbone",
]
