"""The paper's conv/FC prompt module: 2,433,984 parameters that replace a box prompt.

A shared 1x1 convolution reduces the embedding; a 3x3 convolution gives the dense
embedding; a 1x1 convolution, an 8x max-pool and a fully connected layer give the
two sparse tokens (where a box prompt would put its two corner embeddings).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from medprompt.prompt_learners import register

EMBED_DIM = 256
NUM_TOKENS = 2


@register("conv_fc")
class ConvFCPromptModule(nn.Module):
    """Image embedding [B,256,64,64] -> sparse [B,2,256] and dense [B,256,64,64] prompt embeddings."""

    def __init__(self, embed_dim: int = EMBED_DIM, grid: int = 64, pool: int = 8):
        super().__init__()
        self.reduce = nn.Conv2d(embed_dim, 128, kernel_size=1)
        self.dense = nn.Conv2d(128, embed_dim, kernel_size=3, padding=1)
        self.squeeze = nn.Conv2d(128, 64, kernel_size=1)
        self.pool = nn.MaxPool2d(pool)
        self.fc = nn.Linear(64 * (grid // pool) ** 2, NUM_TOKENS * embed_dim)
        self.embed_dim = embed_dim

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.reduce(embeddings))
        dense = F.relu(self.dense(x))
        tokens = self.pool(F.relu(self.squeeze(x))).flatten(1)
        sparse = self.fc(tokens).view(-1, NUM_TOKENS, self.embed_dim)
        return sparse, dense
