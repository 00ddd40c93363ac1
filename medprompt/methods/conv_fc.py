"""conv_fc: the paper's prompt module (Gaillochet et al. 2024), image embedding -> prompt embeddings.

2,433,984 trainable parameters (`medprompt.methods.prompt_module`); its outputs are
added to the fixed `prompt_offset` prompts; the backbone's decoder is frozen.
"""

from __future__ import annotations

from typing import Any

import torch

from medprompt.backbones import Backbone
from medprompt.methods.base import PromptMethod, prompt_offset
from medprompt.methods.prompt_module import ConvFCPromptModule


class ConvFC(PromptMethod):
    name = "conv_fc"

    def __init__(self, backbone: Backbone, train_cfg: dict[str, Any]):
        super().__init__(backbone, train_cfg)
        self.module = ConvFCPromptModule(offset=prompt_offset(backbone, train_cfg))

    def prompts(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.module(embeddings)
