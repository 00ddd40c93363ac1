"""A SAM-architecture backbone small enough for tests: registered by the tests, never shipped.

It keeps the contract every backbone has (256x64x64 image embeddings, SAM's
prompt encoder and two-way-transformer mask decoder, 256x256 low-res logits)
with a three-convolution image encoder and a narrow decoder, so the cache, the
trainer, prediction and the command line run on it in milliseconds. It is
registered through the public registry, as a user's own backbone would be.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from torch import nn

from medprompt.backbones import Backbone, BackboneEntry, InputSpec, register_backbone
from medprompt.backbones.sam_modeling import LayerNorm2d
from medprompt.backbones.sam_parts import EMBED_DIM, sam_mask_decoder, sam_prompt_encoder
from medprompt.backbones.tiny_vit import TinyViT

NAME = "tiny_test"
SPEC = InputSpec(size=256, resize="stretch")
# Random weights segment nothing, so a run on them collapses to the empty mask by design; tests of the
# plumbing switch collapse detection off (tests/test_collapse.py exercises it).
NO_COLLAPSE_CHECK = "collapse.empty_below=0"
# Their box-prompted masks (the default supervision's targets) are noise, so the plumbing trains from the boxes.
BOX_SUPERVISION = "supervision=boxes"


class TinyImageEncoder(nn.Module):
    """256x256x3 -> 256x64x64: two strided 3x3 convolutions, a 1x1 projection and SAM's channel norm."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, stride=2, padding=1), nn.ReLU())
        self.project = nn.Conv2d(width, EMBED_DIM, 1)
        self.norm = LayerNorm2d(EMBED_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.project(self.stem(x)))


def _tiny_sam(make_encoder: Callable[[], nn.Module], name: str, spec: InputSpec, seed: int | None) -> Backbone:
    """`make_encoder()` with SAM's prompt encoder and a narrow one-block decoder; random weights, seeded when asked."""
    if seed is not None:
        torch.manual_seed(seed)
    decoder = sam_mask_decoder(depth=1, mlp_dim=256, activation=nn.ReLU, attention_downsample=4)
    return Backbone(make_encoder(), sam_prompt_encoder(spec.size), decoder, backbone_id=name, spec=spec)


def _register(name: str, summary: str, build: Callable[..., Backbone], spec: InputSpec,
              signature: tuple[str, ...]) -> BackboneEntry:
    return register_backbone(BackboneEntry(name=name, summary=summary, build=build, spec=spec, signature=signature,
                                           weights_hint="a file saved by tests/tiny_backbone.py"))


def build_tiny_backbone(seed: int | None = None) -> Backbone:
    """Random weights (seeded when `seed` is given)."""
    return _tiny_sam(TinyImageEncoder, NAME, SPEC, seed)


ENTRY = _register(NAME, "test-only tiny SAM", build_tiny_backbone, SPEC, ("image_encoder.stem.0.weight",))


VIT_NAME = "tiny_vit_test"
VIT_SPEC = InputSpec(size=256, resize="longest_side")


def build_tiny_vit_backbone(seed: int | None = None) -> Backbone:
    """LiteMedSAM's encoder architecture (TinyViT) narrow and shallow enough for tests: an encoder that takes deep
    prompts. Its last stage has three blocks, which LiteMedSAM's has not, so their checkpoints are told apart."""
    return _tiny_sam(partial(TinyViT, embed_dims=(8, 16, 16, 32), depths=(1, 1, 1, 3), num_heads=(1, 2, 2, 4),
                             window_sizes=(7, 7, 14, 7), merge_strides=(2, 2, 1)), VIT_NAME, VIT_SPEC, seed)


VIT_ENTRY = _register(VIT_NAME, "test-only tiny TinyViT SAM", build_tiny_vit_backbone, VIT_SPEC,
                      ("image_encoder.layers.3.blocks.2.attn.qkv.weight",))
