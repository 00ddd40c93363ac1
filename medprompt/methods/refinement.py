"""Second pass: the first pass's mask gives a box, the method's decoder prompted with it gives the mask.

SAM-SP's self-prompting. The backbone is at its best with a box (its
box-prompted Dice is the upper bound), so a rough first mask is turned into
the box it implies, after dropping islands far smaller than its main
component and widening it a little (MedSAM learnt from boxes up to 20 of 1024
pixels looser than tight on each side, and a first mask that stops short gives
a box too small to recover from), and the decoder redraws the structure inside
it. A slice whose first mask is empty stays empty. Used at prediction for every
method with `refine.enabled`; in training by `distill` and `second_pass_loss`.
`largest_component` is the volume-level step after it (`inference.consistency`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from medprompt.common.config_rules import FRACTION, ConfigSection, Rule
from medprompt.data.boxes import main_box
from medprompt.methods import Method


@dataclass(frozen=True)
class RefineConfig(ConfigSection):
    """`refine` section of a training config (recorded with the run; read again at prediction)."""

    RULES = {"enabled": Rule("bool"), "largest_component": Rule("bool"), "component_share": FRACTION,
             "min_island": FRACTION, "box_margin": Rule("number", 0, 0.5), "distill": Rule("number", 0),
             "second_pass_loss": Rule("number", 0)}

    enabled: bool = False
    min_island: float = 0.0  # components under this fraction of the largest one's area don't widen the box
    box_margin: float = 0.0  # the box is widened by this fraction of the slice's longer side on each side
    distill: float = 0.0     # training: weight of the second pass's mask as a target for the first (SAM-SP)
    second_pass_loss: float = 0.0  # training: weight of the supervision loss on the second pass itself
    largest_component: bool = False  # each predicted volume keeps its largest 3D connected component
    component_share: float = 1.0  # and each other one with at least this share of the largest one's voxels

    @classmethod
    def from_train_config(cls, train_cfg: dict[str, Any]) -> RefineConfig:
        """The run's setting (checked by the training rules); runs recorded before it existed don't refine."""
        return cls.from_mapping(train_cfg.get("refine"))


def prompt_box(box: np.ndarray | None, config: RefineConfig, size: tuple[int, int]) -> np.ndarray | None:
    """The second pass's box on an (H, W) slice from the first mask's main box (inclusive slice pixels): widened by
    `box_margin` and kept on the slice; None (an empty first mask) stays None."""
    if box is None:
        return None
    pad = int(round(config.box_margin * max(size)))
    height, width = size
    return np.clip(np.asarray(box) + np.array([-pad, -pad, pad, pad]), 0, [width - 1, height - 1, width - 1, height - 1])


def second_pass(method: Method, embeddings: torch.Tensor, boxes: list[np.ndarray | None],
                size: tuple[int, int]) -> tuple[list[int], torch.Tensor | None, torch.Tensor | None]:
    """The slices that have a box (slice pixels; None: no box), the low-res logits of the method's decoder prompted
    with their boxes (gradients flow when enabled, for a method that tunes its decoder) and its IoU estimates."""
    keep = [i for i, box in enumerate(boxes) if box is not None]
    if not keep:
        return keep, None, None
    return keep, *method.prompt_with_boxes(embeddings[keep], np.stack([boxes[i] for i in keep]), size)


@torch.no_grad()
def refine(method: Method, embeddings: torch.Tensor, probs: torch.Tensor, size: tuple[int, int],
           config: RefineConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities [B,H,W] after the box-prompted second pass (`probs` from the first pass, same shape), and the
    decoder's IoU estimate of each slice's second-pass mask [B] (NaN where none was drawn: not enabled, or an
    empty first mask)."""
    estimates = torch.full((len(probs),), float("nan"))
    if not config.enabled:
        return probs, estimates
    boxes = [prompt_box(main_box(mask, config.min_island), config, size) for mask in (probs > 0.5).cpu().numpy()]
    keep, logits, iou = second_pass(method, embeddings, boxes, size)
    if not keep:
        return probs, estimates
    out = probs.clone()
    out[keep] = torch.sigmoid(method.backbone.logits_to_image(logits, size))[:, 0].to(out.dtype)
    estimates[keep] = iou.float().cpu()
    return out, estimates
