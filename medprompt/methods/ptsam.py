"""ptsam: PTSAM's prompt tuning, a few learnable 256-d tokens in the mask decoder's token stream, and optionally
deep visual prompts in the image encoder.

The tokens join the decoder's output tokens where a prompt's sparse embeddings
would (8 tokens = 2,048 parameters); the dense input is the backbone's no-mask
embedding; the prompt encoder is unused and the decoder frozen. The same tokens
serve every image. With `encoder_vpt: P`, P learned tokens per attention block
of the image encoder join every window's attention (PTSAM's IE prompts, P = 8
in the paper): the encoder then runs in the training loop on the slices, no
cache is read for the first pass, and the frozen cached embeddings serve only
the box-prompted second pass. Departures from PTSAM: unless `prompt_offset:
none`, the first two decoder tokens start as the corners of the backbone's
prompt for the start box (the training boxes' median, or the whole frame; the
rest near zero), because LiteMedSAM given tokens near zero reads "no prompt"
and predicts nothing, from which the losses cannot move it; the encoder
prompts exist for encoders that take them
(LiteMedSAM's TinyViT, whose first, convolutional stage has no attention and so
no prompts), not for SAM's ViT-B.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medprompt.backbones import Backbone
from medprompt.common.config_rules import Rule
from medprompt.common.errors import MedpromptError
from medprompt.methods.base import PromptMethod, Slices, prompt_offset

INIT_STD = 0.02


class PTSAM(PromptMethod):
    name = "ptsam"
    rules = {"ptsam.tokens": Rule("int", 1, 64), "ptsam.encoder_vpt": Rule("int", 0, 64)}

    @classmethod
    def reads_from(cls, train_cfg: dict[str, Any]) -> tuple[str, ...]:
        return ("images",) if _encoder_prompt_count(train_cfg) else cls.reads

    @classmethod
    def check_backbone(cls, backbone: Backbone, train_cfg: dict[str, Any]) -> None:
        count = _encoder_prompt_count(train_cfg)
        if count and not backbone.encoder_prompt_dims:
            raise MedpromptError(f"ptsam.encoder_vpt={count}: the {backbone.backbone_id} image encoder takes no deep "
                                 "prompts here (LiteMedSAM's does); set ptsam.encoder_vpt=0")
        if count and backbone.spec.low_res != backbone.spec.size:
            raise MedpromptError(f"ptsam.encoder_vpt={count}: the slices are kept at {backbone.spec.low_res} pixels, "
                                 f"the {backbone.backbone_id} encoder's input frame is {backbone.spec.size}")

    def __init__(self, backbone: Backbone, train_cfg: dict[str, Any]):
        super().__init__(backbone, train_cfg)
        self.check_backbone(backbone, train_cfg)
        count = int(self.options(train_cfg).get("tokens", 8))
        dim = backbone.prompt_encoder.embed_dim
        tokens = torch.randn(count, dim) * INIT_STD
        offset = prompt_offset(backbone, train_cfg)
        if offset is not None:
            corners = offset[0].reshape(-1, dim).cpu()[:count]
            tokens[: len(corners)] += corners
        self.tokens = nn.Parameter(tokens)
        self.register_buffer("no_mask", backbone.prompt_encoder.no_mask_embed.weight.detach().reshape(1, dim, 1, 1).clone())
        self.encoder_prompts = _encoder_prompts(backbone, _encoder_prompt_count(train_cfg))

    def image_embeddings(self, slices: Slices) -> torch.Tensor:
        if "images" not in self.reads:  # no encoder prompts: the cached embeddings (what `reads_from` loaded)
            return slices.embeddings
        return self.backbone.encode_frames(slices.images, list(self.encoder_prompts))

    def prompts(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = embeddings.shape[0]
        sparse = self.tokens.unsqueeze(0).expand(b, -1, -1)
        return sparse, self.no_mask.expand(b, -1, *embeddings.shape[-2:])


def _encoder_prompt_count(train_cfg: dict[str, Any]) -> int:
    return int((train_cfg.get(PTSAM.name) or {}).get("encoder_vpt", 0))


def _encoder_prompts(backbone: Backbone, count: int) -> nn.ParameterList:
    """`count` learned tokens per attention block of the backbone's image encoder (none when `count` is 0;
    `check_backbone` has refused an encoder without attention blocks that take them)."""
    if count == 0:
        return nn.ParameterList()
    return nn.ParameterList(nn.Parameter(torch.randn(count, dim) * INIT_STD) for dim in backbone.encoder_prompt_dims)
