"""Noticing a run whose predictions on its own training slices went empty or filled the image.

Box losses have a degenerate minimum: once the decoder answers far below zero
everywhere, every gradient that could bring the mask back vanishes, and the
run ends with an empty model that looks trained. Each epoch measures, on the
training slices, how much of each box and how much of the area outside the
boxes is predicted foreground; an epoch whose prediction is nearly empty both in
the boxes and outside them, or spills over most of the image, is flagged so the
trainer can recover. A mask that misses the boxes but exists elsewhere is not a
collapse: the box losses still pull it in (a whole-image prompt starts that way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from medprompt.common.config_rules import FRACTION, ConfigSection, Rule
from medprompt.training.box_losses import box_union_mask

HEALTHY, EMPTY, FULL = "healthy", "empty", "full"


@dataclass(frozen=True)
class CollapseConfig(ConfigSection):
    """An epoch is unhealthy when its mean fills inside and outside the boxes are both under `empty_below`, or
    its mean fill of the area outside the boxes is over `full_above`; `patience` unhealthy epochs in a row are a collapse; a run restarts from a
    new initialisation at most `max_recoveries` times."""

    RULES = {"empty_below": FRACTION, "full_above": FRACTION, "patience": Rule("int", 1),
             "max_recoveries": Rule("int", 0)}

    empty_below: float = 0.05
    full_above: float = 0.9
    patience: int = 10
    max_recoveries: int = 3


def box_fill(logits: torch.Tensor, boxes: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per image of logits [B,1,h,w]: the fraction of its boxes, and of the rest, predicted foreground."""
    foreground = (logits.detach().float().reshape(-1, *logits.shape[-2:]) > 0).cpu().numpy()
    inside = box_union_mask(boxes, *foreground.shape[-2:])
    area_in = inside.sum((1, 2))
    area_out = (~inside).sum((1, 2))
    fill_in = (foreground & inside).sum((1, 2)) / np.maximum(area_in, 1)
    fill_out = (foreground & ~inside).sum((1, 2)) / np.maximum(area_out, 1)
    return fill_in, fill_out


def classify(mean_fill_inside: float, mean_fill_outside: float, config: CollapseConfig) -> str:
    """`healthy`, `empty` or `full` from the epoch's mean fills."""
    if mean_fill_inside < config.empty_below and mean_fill_outside < config.empty_below:
        return EMPTY
    if mean_fill_outside > config.full_above:
        return FULL
    return HEALTHY
