"""The paper's conv/FC prompt module: 2,433,984 parameters that replace a box prompt.

A shared 1x1 convolution reduces the embedding; a 3x3 convolution gives the dense
embedding; a 1x1 convolution, an 8x max-pool and a fully connected layer give the
two sparse tokens (where a box prompt would put its two corner embeddings).

Its outputs are added to fixed offset prompts (buffers, not parameters). With the
backbone's prompt for a box as the offset (the training boxes' median, or the
whole image), the first prediction is the backbone's answer to that box, not
the empty mask: with the paper's
zero offset, a backbone whose embeddings are small (LiteMedSAM: std ~0.1) reads
the module's first prompts as "no prompt", predicts ~-25 logits everywhere, and
the box losses' gradients vanish.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

EMBED_DIM = 256
NUM_TOKENS = 2


class ConvFCPromptModule(nn.Module):
    """Image embedding [B,256,64,64] -> sparse [B,2,256] and dense [B,256,64,64] prompt embeddings.

    `offset` = (sparse [1,2,256], dense [1,256,1,1]) added to the outputs; None: zero.
    """

    def __init__(self, offset: tuple[torch.Tensor, torch.Tensor] | None = None, embed_dim: int = EMBED_DIM,
                 grid: int = 64, pool: int = 8):
        super().__init__()
        self.reduce = nn.Conv2d(embed_dim, 128, kernel_size=1)
        self.dense = nn.Conv2d(128, embed_dim, kernel_size=3, padding=1)
        self.squeeze = nn.Conv2d(128, 64, kernel_size=1)
        self.pool = nn.MaxPool2d(pool)
        self.fc = nn.Linear(64 * (grid // pool) ** 2, NUM_TOKENS * embed_dim)
        self.embed_dim = embed_dim
        sparse, dense = offset if offset is not None else (torch.zeros(1, NUM_TOKENS, embed_dim),
                                                           torch.zeros(1, embed_dim, 1, 1))
        self.register_buffer("offset_sparse", sparse.detach().reshape(1, NUM_TOKENS, embed_dim).clone())
        self.register_buffer("offset_dense", dense.detach().reshape(1, embed_dim, 1, 1).clone())

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.reduce(embeddings))
        dense = F.relu(self.dense(x)) + self.offset_dense
        tokens = self.pool(F.relu(self.squeeze(x))).flatten(1)
        sparse = self.fc(tokens).view(-1, NUM_TOKENS, self.embed_dim) + self.offset_sparse
        return sparse, dense
