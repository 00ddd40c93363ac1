"""Mask targets and their loss: Dice + binary cross-entropy (MONAI's DiceCELoss) of low-res logits.

Two kinds of targets, both in the part of the low-res logits that covers the slice:
- `masks`: the dataset's masks, area-resized (the fully supervised comparison);
- `pseudo_masks`: what the frozen backbone draws inside each training box (its
  box-prompted answer, the upper bound's own masks). Only the boxes are read,
  so this stays box supervision: the backbone turns each tight box into a mask
  once, and the method learns to draw it without the box.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.losses import DiceCELoss
from torch.nn import functional as F

from medprompt.backbones import Backbone
from medprompt.common.device import autocast

PROMPT_BATCH = 8


def low_res_masks(masks: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """Binary slice masks [N,H,W] -> soft targets [N,1,h,w] (the foreground fraction of each low-res pixel)."""
    return F.interpolate(torch.from_numpy(masks.astype(np.float32))[:, None], size=shape, mode="area")


@torch.no_grad()
def pseudo_masks(backbone: Backbone, embeddings: torch.Tensor, boxes: list[np.ndarray],
                 image_size: tuple[int, int]) -> torch.Tensor:
    """Soft targets [N,1,h,w]: the backbone's box-prompted probabilities for each slice's boxes (slice pixels,
    [K,4] each), the maximum over a slice's boxes; zero for a slice without a box."""
    owners = np.array([i for i, b in enumerate(boxes) for _ in range(len(b))], dtype=np.int64)
    flat = np.concatenate([np.asarray(b).reshape(-1, 4) for b in boxes]) if len(owners) else np.zeros((0, 4))
    shape = backbone.spec.low_res_shape(image_size)
    out = torch.zeros(len(boxes), 1, *shape)
    for start in range(0, len(owners), PROMPT_BATCH):
        index = owners[start : start + PROMPT_BATCH]
        chunk = embeddings[torch.from_numpy(index)].to(backbone.device, torch.float32)
        with autocast(backbone.device):
            logits = backbone.prompt(chunk, flat[start : start + PROMPT_BATCH], image_size)
        probs = torch.sigmoid(backbone.spec.crop_low_res(logits, image_size).float()).cpu()
        for j, owner in enumerate(index):
            out[owner] = torch.maximum(out[owner], probs[j])
    return out


class MaskLoss:
    """Dice + cross-entropy of logits [B,1,h,w] against targets [B,1,h,w] in [0,1]."""

    def __init__(self) -> None:
        self.loss = DiceCELoss(sigmoid=True)

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        value = self.loss(logits, targets.to(logits.device, logits.dtype))
        return {"loss": value, "dice_ce": value.detach()}
