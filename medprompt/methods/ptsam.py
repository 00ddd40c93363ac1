"""ptsam: PTSAM's decoder prompt tuning, a few learnable 256-d tokens in the mask decoder's token stream.

The tokens join the decoder's output tokens where a prompt's sparse embeddings
would (8 tokens = 2,048 parameters); the dense input is the backbone's no-mask
embedding; the prompt encoder is unused and the decoder frozen. The same tokens
serve every image. Departure from PTSAM: with `prompt_offset: whole_image_box`
the first two tokens start as the backbone's whole-image box corners (the rest
near zero), because LiteMedSAM given tokens near zero reads "no prompt" and
predicts nothing, from which the box losses cannot move it; PTSAM's deep visual
prompts in the image encoder (`encoder_vpt`) are not implemented.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medprompt.backbones import Backbone
from medprompt.config_rules import Rule
from medprompt.methods.base import PromptMethod, prompt_offset

INIT_STD = 0.02


class PTSAM(PromptMethod):
    name = "ptsam"
    rules = {"ptsam.tokens": Rule("int", 1, 64)}

    def __init__(self, backbone: Backbone, train_cfg: dict[str, Any]):
        super().__init__(backbone, train_cfg)
        count = int(self.options(train_cfg).get("tokens", 8))
        dim = backbone.prompt_encoder.embed_dim
        tokens = torch.randn(count, dim) * INIT_STD
        offset = prompt_offset(backbone, train_cfg)
        if offset is not None:
            corners = offset[0].reshape(-1, dim).cpu()[:count]
            tokens[: len(corners)] += corners
        self.tokens = nn.Parameter(tokens)
        self.register_buffer("no_mask", backbone.prompt_encoder.no_mask_embed.weight.detach().reshape(1, dim, 1, 1).clone())

    def prompts(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = embeddings.shape[0]
        sparse = self.tokens.unsqueeze(0).expand(b, -1, -1)
        return sparse, self.no_mask.expand(b, -1, *embeddings.shape[-2:])
