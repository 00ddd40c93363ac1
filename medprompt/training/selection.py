"""Box-only model selection: score a method on held-out box-annotated slices, never on their masks.

Each held-out slice contributes the IoU between the box around what the model
predicts there (its islands dropped as the second pass drops them) and its
annotated box (the union of its boxes); an empty prediction scores 0. The
epoch with the best mean is the one a run keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from medprompt.backbones import Backbone
from medprompt.common.config_rules import FRACTION, ConfigSection, Rule
from medprompt.common.device import autocast
from medprompt.data.boxes import main_box
from medprompt.methods import Method, Slices

BATCH = 8


@dataclass(frozen=True)
class SelectionConfig(ConfigSection):
    """`selection` section of a training config: which split's boxes score the epochs (None: keep the last), from
    which fraction of the schedule on, how often, and on at most how many slices."""

    RULES = {"split": Rule("choice", choices=("train", "val", "test"), nullable=True), "every": Rule("int", 1),
             "max_slices": Rule("int", 1), "after": FRACTION}

    split: str | None = "val"
    every: int = 5
    max_slices: int = 32
    after: float = 0.5


def box_area(box: np.ndarray) -> int:
    """Pixels of an inclusive box."""
    return int((box[2] - box[0] + 1) * (box[3] - box[1] + 1))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two inclusive pixel boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(w, 0) * max(h, 0)
    return float(inter / (box_area(a) + box_area(b) - inter))


def union_box(boxes: np.ndarray) -> np.ndarray:
    """One box around every box [K,4] of a slice."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    return np.array([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()])


class BoxSelector:
    """Held-out slices (what the method reads of them) and their annotated boxes (in the cropped low-res frame
    of the backbone's logits)."""

    def __init__(self, backbone: Backbone, slices: Slices, low_res_boxes: Sequence[np.ndarray],
                 image_size: tuple[int, int], min_island: float = 0.0):
        self.backbone, self.slices, self.image_size = backbone, slices, image_size
        self.min_island = min_island
        self.targets = [union_box(b) for b in low_res_boxes]

    def __len__(self) -> int:
        return len(self.targets)

    @torch.no_grad()
    def score(self, method: Method) -> float:
        """Mean box IoU of the method's first-pass predictions over the held-out slices."""
        was_training = method.training
        method.eval()
        device = self.backbone.device
        ious = []
        for start in range(0, len(self.targets), BATCH):
            with autocast(device):
                logits = method(self.slices[start : start + BATCH].to(device))
            masks = (self.backbone.spec.crop_low_res(logits, self.image_size)[:, 0] > 0).cpu().numpy()
            for mask, target in zip(masks, self.targets[start : start + BATCH]):
                box = main_box(mask, self.min_island)
                ious.append(0.0 if box is None else box_iou(box, target))
        method.train(was_training)
        return float(np.mean(ious))
