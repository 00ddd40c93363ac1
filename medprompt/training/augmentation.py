"""Random spatial and intensity transforms of training slices, for methods that read the slices themselves.

Ten slices are too few for a network trained from scratch to see how a
structure may sit, turn and look: MONAI's random affine (rotation, scaling,
translation) moves each slice, its target mask and the mask of its boxes
alike, and a random gamma changes the slice's contrast. Cached embeddings
cannot follow a transformed slice, so a method that reads them is never
augmented. The draw is a function of (seed, epoch, batch): a resumed run repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from monai.transforms import RandAdjustContrast, RandAffine
from torch.nn import functional as F

from medprompt.common.config_rules import FRACTION, ConfigSection, Rule
from medprompt.data.boxes import main_box
from medprompt.methods import Slices


@dataclass(frozen=True)
class AugmentConfig(ConfigSection):
    """`augment` section of a training config."""

    RULES = {"enabled": Rule("bool"), "rotate": Rule("number", 0, 180), "scale": Rule("number", 0, 0.9),
             "translate": Rule("number", 0, 0.5), "contrast": FRACTION}

    enabled: bool = False
    rotate: float = 15.0     # degrees, either way
    scale: float = 0.15      # relative size change, either way
    translate: float = 0.08  # fraction of the frame, either way
    contrast: float = 0.5    # probability of a gamma in [0.7, 1.5] on the intensities


class SliceAugmentation:
    """Transforms a batch of slices [B,1,S,S] (S: the low-res frame) with their targets and boxes, which live on
    the part `crop` (h, w) of that frame that covers the slice."""

    def __init__(self, config: AugmentConfig, frame: int, crop: tuple[int, int]):
        self.frame, self.crop = frame, crop
        self.affine = RandAffine(prob=1.0, rotate_range=np.deg2rad(config.rotate), scale_range=config.scale,
                                 translate_range=(config.translate * frame,) * 2, padding_mode="zeros")
        self.contrast = RandAdjustContrast(prob=config.contrast, gamma=(0.7, 1.5))

    def __call__(self, slices: Slices, targets: torch.Tensor | None, boxes: list[np.ndarray],
                 seed: tuple[int, ...]) -> tuple[Slices, torch.Tensor | None, list[np.ndarray]]:
        """The transformed slices, targets [B,1,h,w] (or None) and boxes (the box of each transformed box mask;
        none where it left the frame)."""
        rng = np.random.default_rng(list(seed))
        self.affine.set_random_state(seed=int(rng.integers(2**31)))
        self.contrast.set_random_state(seed=int(rng.integers(2**31)))
        h, w = self.crop
        images, moved_targets, moved_boxes = [], [], []
        for i, image in enumerate(slices.images.cpu()):
            box_mask = torch.zeros(1, self.frame, self.frame)
            for x0, y0, x1, y1 in np.asarray(boxes[i]).reshape(-1, 4):
                box_mask[0, y0 : y1 + 1, x0 : x1 + 1] = 1.0
            target = F.pad(targets[i].cpu(), (0, self.frame - w, 0, self.frame - h)) if targets is not None \
                else torch.zeros_like(box_mask)
            stack = torch.as_tensor(self.affine(torch.cat([image, target, box_mask]), mode="bilinear"))
            images.append(torch.as_tensor(self.contrast(stack[:1].clamp(0, 1))))
            moved_targets.append(stack[1:2, :h, :w])
            box = main_box((stack[2, :h, :w] > 0.5).numpy())
            moved_boxes.append(np.zeros((0, 4), np.int64) if box is None else box[None])
        device = slices.images.device
        moved = Slices(slices.embeddings, torch.stack(images).to(device), slices.image_size)
        return moved, (torch.stack(moved_targets).to(device) if targets is not None else None), moved_boxes
