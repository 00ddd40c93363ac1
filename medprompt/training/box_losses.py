"""Box-constraint losses (Kervadec et al. 2020): train a segmenter from tight boxes alone.

Three terms on foreground probabilities p [B,H,W] and boxes (inclusive pixel
corners x_min, y_min, x_max, y_max; several per image allowed, none allowed):
- outside: mean of -log(1-p) over the pixels outside every box of the batch;
- tightness: each box is cut into bands of width d along each axis (the last band
  keeps the remainder); the summed p in a band must reach the band's width; the
  extended log-barrier penalises violations; per image the band penalties are
  summed, then averaged over the batch;
- size: the summed p of the image must lie in [lower, upper] x (area of the boxes);
  both penalties summed, divided by that area, averaged over the batch.
Band sums come from one integral image per batch, never from per-band masks.
Images without a box contribute nothing to tightness and size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from medprompt.common.config_rules import ConfigSection, Rule


@dataclass(frozen=True)
class BoxLossConfig(ConfigSection):
    """`loss` section of a training config: the weights and barrier of the paper's recipe."""

    RULES = {"band_width": Rule("int", 0), "t": Rule("number", 1e-12),
             "size_bounds": Rule("numbers", 0, 1, length=2, increasing=True), "w_outside": Rule("number", 0),
             "w_tightness": Rule("number", 0), "w_size": Rule("number", 0)}

    band_width: int = 5
    t: float = 5.0
    size_bounds: tuple[float, float] = (0.5, 0.9)
    w_outside: float = 1.0
    w_tightness: float = 1e-4
    w_size: float = 1e-2

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> BoxLossConfig:
        values = dict(values or {})
        if "size_bounds" in values:
            values["size_bounds"] = tuple(values["size_bounds"])
        return cls(**values)


def log_barrier(z: torch.Tensor, t: float) -> torch.Tensor:
    """Extended log-barrier psi_t(z) for the constraint z <= 0 (linear beyond -1/t^2)."""
    threshold = -1.0 / t**2
    inside = -torch.log(-torch.clamp(z, max=threshold)) / t
    linear = t * z - math.log(1.0 / t**2) / t + 1.0 / t
    return torch.where(z <= threshold, inside, linear)


def box_union_mask(boxes: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """[B,H,W] bool: inside at least one box of each image."""
    mask = np.zeros((len(boxes), height, width), dtype=bool)
    for i, image_boxes in enumerate(boxes):
        for x0, y0, x1, y1 in np.asarray(image_boxes, dtype=np.int64).reshape(-1, 4):
            mask[i, y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


def band_rectangles(boxes: Sequence[np.ndarray], band_width: int) -> np.ndarray:
    """Every band of every box as rows (image, y0, y1, x0, x1, width), inclusive bounds.

    Horizontal bands (d rows each, spanning the box's columns) and vertical bands
    (d columns each, spanning its rows); each band must hold `width` foreground pixels.
    """
    parts = []
    for image, image_boxes in enumerate(boxes):
        for x0, y0, x1, y1 in np.asarray(image_boxes, dtype=np.int64).reshape(-1, 4):
            parts.append(_bands(image, y0, y1, x0, x1, band_width, horizontal=True))
            parts.append(_bands(image, y0, y1, x0, x1, band_width, horizontal=False))
    return np.concatenate(parts) if parts else np.zeros((0, 6), dtype=np.int64)


def _bands(image: int, y0: int, y1: int, x0: int, x1: int, d: int, horizontal: bool) -> np.ndarray:
    """The bands of one box along one axis (rows of band_rectangles)."""
    lo, hi = (y0, y1) if horizontal else (x0, x1)
    starts = np.arange(lo, hi + 1, d)
    ends = np.minimum(starts + d - 1, hi)
    n = len(starts)
    fixed_lo, fixed_hi = (np.full(n, x0), np.full(n, x1)) if horizontal else (np.full(n, y0), np.full(n, y1))
    cols = (starts, ends, fixed_lo, fixed_hi) if horizontal else (fixed_lo, fixed_hi, starts, ends)
    return np.stack([np.full(n, image), *cols, ends - starts + 1], axis=1)


def rectangle_sums(probs: torch.Tensor, rects: torch.Tensor) -> torch.Tensor:
    """Sum of probs [B,H,W] over inclusive rectangles (image, y0, y1, x0, x1, ...) via an integral image."""
    integral = F.pad(probs.cumsum(1).cumsum(2), (1, 0, 1, 0))
    b, y0, y1, x0, x1 = (rects[:, k] for k in range(5))
    return integral[b, y1 + 1, x1 + 1] - integral[b, y0, x1 + 1] - integral[b, y1 + 1, x0] + integral[b, y0, x0]


class BoxConstraintLoss(torch.nn.Module):
    """Outside + tightness + size losses from boxes; returns the total and each term."""

    def __init__(self, config: BoxLossConfig = BoxLossConfig()):
        super().__init__()
        self.config = config

    def forward(self, logits: torch.Tensor, boxes: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        """`logits` [B,1,H,W] or [B,H,W]; `boxes` one [K,4] array per image, in the logits' pixels."""
        cfg = self.config
        logits = logits.float().reshape(-1, *logits.shape[-2:])
        batch, height, width = logits.shape
        device = logits.device
        inside = torch.from_numpy(box_union_mask(boxes, height, width)).to(device)
        outside_pixels = ~inside
        if outside_pixels.any():
            outside = F.softplus(logits)[outside_pixels].mean()
        else:
            outside = logits.new_zeros(())
        probs = torch.sigmoid(logits)

        rects = torch.from_numpy(band_rectangles(boxes, cfg.band_width)).to(device)
        tightness = logits.new_zeros(())
        if len(rects):
            violations = rects[:, 5].to(probs.dtype) - rectangle_sums(probs, rects)
            per_image = torch.zeros(batch, device=device).index_add(0, rects[:, 0], log_barrier(violations, cfg.t))
            tightness = per_image.mean()

        area = inside.flatten(1).sum(1).to(probs.dtype)
        has_box = area > 0
        size = logits.new_zeros(())
        if has_box.any():
            total = probs.flatten(1).sum(1)
            lower, upper = cfg.size_bounds
            penalty = log_barrier(lower * area - total, cfg.t) + log_barrier(total - upper * area, cfg.t)
            size = torch.where(has_box, penalty / area.clamp_min(1), torch.zeros_like(penalty)).sum() / batch

        loss = cfg.w_outside * outside + cfg.w_tightness * tightness + cfg.w_size * size
        return {"loss": loss, "outside": outside, "tightness": tightness, "size": size}
