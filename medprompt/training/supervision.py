"""What a run learns from, as registered strategies: the annotation each reads, its targets and its loss.

    boxes          the paper's box-constraint losses on the tight boxes (no mask read)
    pseudo_masks   Dice + cross-entropy on the masks the backbone draws in the boxes (no mask read)
    masks          Dice + cross-entropy on the dataset's masks (the fully supervised comparison)
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from medprompt.backbones import Backbone
from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import PreprocessedDataset
from medprompt.methods import Slices
from medprompt.training.box_losses import BoxConstraintLoss, BoxLossConfig
from medprompt.training.mask_targets import MaskLoss, low_res_masks, pseudo_masks


class Supervision:
    """A way to learn from the training slices: what it reads, the per-slice targets it makes once, its loss."""

    name: ClassVar[str]
    reads_masks: ClassVar[bool] = False       # the dataset's masks of the training slices
    reads_embeddings: ClassVar[bool] = False  # the backbone draws its targets from the embeddings

    def __init__(self, loss_config: BoxLossConfig):
        self.loss_config = loss_config

    def check(self, dataset: PreprocessedDataset, boxes_csv: object) -> None:
        """Refuse, before any work, a dataset or boxes file this supervision cannot learn from."""

    def targets(self, backbone: Backbone, inputs: Slices, boxes: list[np.ndarray], masks: np.ndarray | None,
                image_size: tuple[int, int]) -> torch.Tensor | None:
        """Low-res targets [N,1,h,w] for the (oriented) training slices, or None when the loss reads boxes."""
        return None

    def loss(self, logits: torch.Tensor, targets: torch.Tensor | None,
             boxes: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """Loss terms (`loss` their weighted sum) of cropped low-res logits."""
        raise NotImplementedError


class BoxSupervision(Supervision):
    name = "boxes"

    def __init__(self, loss_config: BoxLossConfig):
        super().__init__(loss_config)
        self.box_loss = BoxConstraintLoss(loss_config)

    def loss(self, logits, targets, boxes):
        return self.box_loss(logits, boxes)


class PseudoMaskSupervision(Supervision):
    name = "pseudo_masks"
    reads_embeddings = True

    def __init__(self, loss_config: BoxLossConfig):
        super().__init__(loss_config)
        self.mask_loss = MaskLoss()

    def targets(self, backbone, inputs, boxes, masks, image_size):
        return pseudo_masks(backbone, inputs.embeddings, boxes, image_size)

    def loss(self, logits, targets, boxes):
        return self.mask_loss(logits, targets)


class MaskSupervision(PseudoMaskSupervision):
    name = "masks"
    reads_masks = True
    reads_embeddings = False

    def check(self, dataset, boxes_csv):
        if boxes_csv is not None or not dataset.has_masks:
            held = "masks, but --boxes was given" if dataset.has_masks else "none"
            raise MedpromptError(f"--supervision masks: needs the dataset's masks ({dataset.root} has {held}); use "
                                 "--supervision boxes")

    def targets(self, backbone, inputs, boxes, masks, image_size):
        return low_res_masks(masks, backbone.spec.low_res_shape(image_size))


SUPERVISIONS: dict[str, type[Supervision]] = {s.name: s for s in (BoxSupervision, PseudoMaskSupervision, MaskSupervision)}
