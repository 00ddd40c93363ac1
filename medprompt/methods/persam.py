"""persam and persam_f: PerSAM and PerSAM-F (Zhang et al. 2024), one reference slice and its mask, no training.

The reference's embedding, averaged over the cells its mask covers, is the
target feature. On a new slice, its cosine similarity to every cell is the
location prior: the most similar cell is a positive point and, for PerSAM, the
least similar a negative one. The points prompt the frozen decoder, then two
cascaded passes refine: the previous logits as the mask prompt (and the box
of the previous mask), keeping the multimask output the decoder rates best.
PerSAM-F learns two weights mixing the decoder's three masks of the first pass
on the reference itself, and refines with the box in both cascaded passes.

The reference mask is the dataset's (`supervision: masks`) or what the
backbone draws in the reference box (`pseudo_masks`); with several shots the
target feature pools every reference. Departures from PerSAM: target-guided
attention and target-semantic prompting change the decoder's attention layers,
which the official SAM classes do not expose, so they are left out; PerSAM-F's
Dice + focal loss is Dice + cross-entropy here, and it trains with the shared
loop's Adam and step schedule rather than AdamW and a cosine schedule.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from medprompt.backbones import Backbone
from medprompt.backbones.base import decode_multimask
from medprompt.common.errors import MedpromptError
from medprompt.data.boxes import main_box
from medprompt.methods.base import Method, Slices


class PerSAM(Method):
    name = "persam"
    supervisions = ("masks", "pseudo_masks")
    trainable = False
    references = True
    negative_point = True        # the least similar cell as a negative point
    box_in_first_refinement = False

    def __init__(self, backbone: Backbone, train_cfg: dict[str, Any]):
        super().__init__(backbone, train_cfg)
        self.register_buffer("target", torch.zeros(backbone.prompt_encoder.embed_dim))

    def setup(self, slices: Slices, targets: torch.Tensor) -> None:
        """The target feature: the references' embeddings pooled over the grid cells their masks touch."""
        side = self.backbone.spec.low_res
        masks = F.pad((targets > 0.5).float(), (0, side - targets.shape[-1], 0, side - targets.shape[-2]))
        cells = F.interpolate(masks, size=slices.embeddings.shape[-2:], mode="area")[:, 0] > 0
        if not cells.any():
            raise MedpromptError(f"method {self.name}: the reference masks are empty; give a slice with the structure")
        features = slices.embeddings.permute(0, 2, 3, 1)[cells]
        self.target.copy_(self.pool(features))

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """One target feature [C] from the reference cells' features [K,C], unit length (PerSAM: the mean)."""
        return F.normalize(features.mean(0), dim=0)

    def location_points(self, slices: Slices) -> tuple[torch.Tensor, torch.Tensor]:
        """Point prompts in the input frame [B,P,2] and their labels [B,P] from the similarity to the target."""
        spec = self.backbone.spec
        features = F.normalize(slices.embeddings, dim=1)
        similarity = torch.einsum("c,bchw->bhw", self.target.to(features.dtype), features)[:, None]
        similarity = F.interpolate(similarity.float(), size=(spec.low_res, spec.low_res), mode="bilinear")
        h, w = spec.low_res_shape(slices.image_size)
        flat = similarity[:, 0, :h, :w].reshape(len(similarity), -1)
        picks = [flat.argmax(1), *([flat.argmin(1)] if self.negative_point else [])]
        scale = spec.size / spec.low_res
        coords = torch.stack([torch.stack([p % w, p // w], dim=1) for p in picks], dim=1).float() * scale
        labels = torch.tensor([1, 0][: len(picks)], device=coords.device).expand(len(flat), -1)
        return coords, labels

    def decode_prompts(self, slices: Slices, points: tuple[torch.Tensor, torch.Tensor],
                       boxes: torch.Tensor | None = None, masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's three masks [B,3,256,256] and its IoU estimates [B,3] for these prompts."""
        sparse, dense = self.backbone.prompt_encoder(points=points, boxes=boxes, masks=masks)
        return decode_multimask(self.backbone.mask_decoder, self.backbone.image_pe, slices.embeddings, sparse, dense)

    def first_pass(self, slices: Slices, points: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Low-res logits [B,1,256,256] from the points alone (the decoder's single-mask output)."""
        sparse, dense = self.backbone.prompt_encoder(points=points, boxes=None, masks=None)
        return self.decode(slices.embeddings, sparse, dense)

    def forward(self, slices: Slices) -> torch.Tensor:
        points = self.location_points(slices)
        logits = self.first_pass(slices, points)
        if self.training:
            return logits
        logits = self.cascade(slices, points, logits, with_box=self.box_in_first_refinement)
        return self.cascade(slices, points, logits, with_box=True)

    def cascade(self, slices: Slices, points: tuple[torch.Tensor, torch.Tensor], logits: torch.Tensor,
               with_box: bool) -> torch.Tensor:
        """One cascaded pass: the logits as mask prompt (and their mask's box); the best-rated of three masks.
        A slice whose mask is empty keeps its logits when a box is asked for."""
        keep = list(range(len(logits)))
        boxes = None
        if with_box:
            found = [main_box(mask) for mask in (logits[:, 0] > 0).cpu().numpy()]
            keep = [i for i, box in enumerate(found) if box is not None]
            if not keep:
                return logits
            scale = self.backbone.spec.size / self.backbone.spec.low_res
            boxes = torch.from_numpy(np.stack([found[i] for i in keep])).to(logits.device).float() * scale
        coords, labels = points
        masks, scores = self.decode_prompts(slices[keep], (coords[keep], labels[keep]), boxes, logits[keep])
        best = masks[torch.arange(len(keep)), scores.argmax(1)][:, None]
        out = logits.clone()
        out[keep] = best.to(out.dtype)
        return out


class PerSAMF(PerSAM):
    name = "persam_f"
    trainable = True
    negative_point = False
    box_in_first_refinement = True

    def __init__(self, backbone: Backbone, train_cfg: dict[str, Any]):
        super().__init__(backbone, train_cfg)
        self.mix = nn.Parameter(torch.full((2,), 1 / 3))  # the second and third masks' weights; the first: 1 - sum

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        """PerSAM-F's target feature: the mean of the references' mean and maximum features, unit length."""
        return F.normalize((features.mean(0) + features.amax(0)) / 2, dim=0)

    def first_pass(self, slices: Slices, points: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The decoder's three masks mixed by the learned weights."""
        masks, _ = self.decode_prompts(slices, points)
        weights = torch.cat([1 - self.mix.sum(0, keepdim=True), self.mix]).to(masks.dtype)
        return (masks * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
