"""Low-rank adaptation (Hu et al. 2021) of a frozen linear layer: W x + (alpha / r) B A x, with B zero at the start."""

from __future__ import annotations

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    """A frozen `nn.Linear` plus a trainable rank-`rank` update; equal to the base layer until B is trained."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.t() @ self.lora_b.t()) * self.scale


def add_lora(module: nn.Module, names: tuple[str, ...], rank: int, alpha: float) -> int:
    """Replace every linear layer of `module` named in `names` (e.g. q_proj, v_proj) by a LoRA layer; how many."""
    targets = [(parent, name) for parent in module.modules() for name, child in parent.named_children()
               if name in names and isinstance(child, nn.Linear)]
    for parent, name in targets:
        setattr(parent, name, LoRALinear(getattr(parent, name), rank, alpha))
    return len(targets)
