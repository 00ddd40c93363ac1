"""sam_sp: SAM-SP's self-prompting (Zhou et al. 2024) with a LoRA-tuned mask decoder.

The first pass needs no prompt from the user; the box of its mask prompts a
second pass through the frozen prompt encoder and the same tuned decoder; the
second pass distils into the first and is itself supervised (`refine.distill`,
`refine.second_pass_loss`), and at prediction it gives the final mask
(`refine.enabled`). The trained part is a low-rank update of the decoder's
attention projections (query and value, rank `sam_sp.rank`).

Departures from SAM-SP: the image encoder is not tuned (its embeddings come
from the cache; SAM-SP adapts the encoder too), and unless `prompt_offset:
none` the first pass is given the backbone's prompt for the start box (the
training boxes' median, or the whole frame) instead of no prompt, since
LiteMedSAM with no prompt predicts nothing and a zero-initialised LoRA update
cannot move it from there.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from medprompt.backbones import Backbone
from medprompt.backbones.sam_modeling import MaskDecoder
from medprompt.common.config_rules import Rule
from medprompt.methods.base import PromptMethod, prompt_offset
from medprompt.methods.lora import add_lora

LORA_TARGETS = ("q_proj", "v_proj")


class SAMSP(PromptMethod):
    name = "sam_sp"
    rules = {"sam_sp.rank": Rule("int", 1, 256), "sam_sp.alpha": Rule("number", 1e-12)}

    def __init__(self, backbone: Backbone, train_cfg: dict[str, Any]):
        super().__init__(backbone, train_cfg)
        options = self.options(train_cfg)
        self.decoder = copy.deepcopy(backbone.mask_decoder).requires_grad_(False)
        add_lora(self.decoder.transformer, LORA_TARGETS, int(options.get("rank", 4)), float(options.get("alpha", 4)))
        dim = backbone.prompt_encoder.embed_dim
        offset = prompt_offset(backbone, train_cfg)
        sparse = offset[0].detach().clone() if offset is not None else torch.zeros(1, 0, dim)
        self.register_buffer("fixed_sparse", sparse.reshape(1, -1, dim))
        self.register_buffer("no_mask", backbone.prompt_encoder.no_mask_embed.weight.detach().reshape(1, dim, 1, 1).clone())

    def prompts(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = embeddings.shape[0]
        return self.fixed_sparse.expand(b, -1, -1), self.no_mask.expand(b, -1, *embeddings.shape[-2:])

    @property
    def mask_decoder(self) -> MaskDecoder:
        return self.decoder
