"""box_prompted: the frozen backbone prompted with each slice's tight ground-truth boxes, MedSAM's own use.

Nothing is learned: it is the upper bound the learned methods are compared
with, and needs the boxes at prediction (a dataset with masks, or a box CSV).
"""

from __future__ import annotations

import torch

from medprompt.methods.base import Method, Slices


class BoxPrompted(Method):
    name = "box_prompted"
    supervisions = ("boxes",)
    trainable = False
    needs_boxes = True

    def forward(self, slices: Slices) -> torch.Tensor:
        raise TypeError("box_prompted predicts from boxes only; use prompt_with_boxes")
