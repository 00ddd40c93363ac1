"""The Method protocol: what every segmentation method built on a frozen backbone provides.

A method reads cached image embeddings [B,256,64,64] and gives low-res mask
logits [B,1,256,256] through a mask decoder (the backbone's, or one it tunes).
The trainer's loop (seeds, batches, schedule, resume, log, collapse recovery,
model selection) is shared; a method owns only its forward pass and the
tensors it learns. Its saved state is those tensors alone: the frozen
backbone is never part of it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from medprompt.backbones import Backbone
from medprompt.config_rules import Rule


class Method(nn.Module):
    """Base class of the registered methods; subclasses set the class attributes and `forward`."""

    name: ClassVar[str]
    reads: ClassVar[str] = "embeddings"                    # what prediction feeds it (the cache when it matches)
    supervisions: ClassVar[tuple[str, ...]] = ("boxes", "pseudo_masks", "masks")  # `train --supervision`
    trainable: ClassVar[bool] = True                       # False: nothing to learn, `train` only records the run
    needs_boxes: ClassVar[bool] = False                    # prediction prompts it with the ground-truth boxes
    rules: ClassVar[dict[str, Rule]] = {}                  # its own config keys (under `train.<name>.`)

    def __init__(self, backbone: Backbone, train_cfg: dict[str, Any]):
        super().__init__()
        self.__dict__["backbone"] = backbone  # not a submodule: its weights are frozen and not the method's state

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Low-res logits [B,1,256,256] of the first pass."""
        raise NotImplementedError

    def decode(self, embeddings: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """The decoder this method predicts with, given prompts (the backbone's unless the method tunes one)."""
        return self.backbone.decode(embeddings, sparse, dense)

    def prompt_with_boxes(self, embeddings: torch.Tensor, boxes: np.ndarray, image_size: tuple[int, int]) -> torch.Tensor:
        """Low-res logits of this method's decoder prompted with one box per image (slice pixels)."""
        sparse, dense = self.backbone.embed_boxes(boxes, image_size)
        return self.decode(embeddings.to(sparse.dtype), sparse, dense)

    def options(self, train_cfg: dict[str, Any]) -> dict[str, Any]:
        """This method's own section of the training config."""
        return dict(train_cfg.get(self.name) or {})

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The tensors a run saves: learned parameters and the buffers they are used with."""
        learned = {k: v for k, v in self.named_parameters() if v.requires_grad}
        return {**learned, **{k: v for k, v in self.named_buffers()}}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load what `trainable_state` saved; a missing, extra or misshapen tensor is an error."""
        expected = self.trainable_state()
        if set(state) != set(expected):
            missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
            raise ValueError(f"tensors missing {missing[:3]}, unexpected {extra[:3]}")
        self.load_state_dict(state, strict=False)

    def parameter_count(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


PROMPT_OFFSETS = ("whole_image_box", "none")


class PromptMethod(Method):
    """A method that learns the decoder's prompts: `prompts` gives (sparse [B,T,256], dense [B,256,64,64])."""

    def prompts(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        sparse, dense = self.prompts(embeddings)
        return self.decode(embeddings, sparse, dense)


def prompt_offset(backbone: Backbone, train_cfg: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The fixed prompts a method starts from (`prompt_offset`: PROMPT_OFFSETS): the backbone's prompt for a box
    around the whole image, so that training starts from a real mask; None for the paper's zero start."""
    return backbone.whole_image_prompt() if train_cfg["prompt_offset"] == "whole_image_box" else None
