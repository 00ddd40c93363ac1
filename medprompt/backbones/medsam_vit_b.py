"""MedSAM: SAM ViT-B fine-tuned on medical images; 1024x1024 input, stretched, min-max scaled to [0,1].

Its weights are not shipped: the user passes the MedSAM authors' `medsam_vit_b.pth`.
"""

from __future__ import annotations

from functools import partial

import torch

from medprompt.backbones.base import Backbone
from medprompt.backbones.entry import BackboneEntry
from medprompt.backbones.input_spec import InputSpec
from medprompt.backbones.sam_modeling import ImageEncoderViT
from medprompt.backbones.sam_parts import EMBED_DIM, sam_mask_decoder, sam_prompt_encoder

NAME = "medsam_vit_b"
SPEC = InputSpec(size=1024, resize="stretch")


def build_medsam_vit_b() -> Backbone:
    """The SAM ViT-B architecture that MedSAM fine-tuned (random weights)."""
    encoder = ImageEncoderViT(
        depth=12,
        embed_dim=768,
        img_size=SPEC.size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=12,
        patch_size=16,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=[2, 5, 8, 11],
        window_size=14,
        out_chans=EMBED_DIM,
    )
    return Backbone(encoder, sam_prompt_encoder(SPEC.size), sam_mask_decoder(), backbone_id=NAME, spec=SPEC)


ENTRY = BackboneEntry(
    name=NAME,
    summary="MedSAM: SAM ViT-B image encoder (89M parameters), SAM prompt encoder and mask decoder",
    build=build_medsam_vit_b,
    spec=SPEC,
    signature=("image_encoder.pos_embed", "image_encoder.blocks.0.attn.rel_pos_h"),
    weights_hint="medsam_vit_b.pth from the MedSAM authors (https://github.com/bowang-lab/MedSAM)",
)
