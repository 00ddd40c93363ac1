"""The Method protocol: what every segmentation method built on a frozen backbone provides.

A method reads a batch of `Slices` (cached image embeddings [B,256,64,64], the
slices themselves in the backbone's low-res frame, or both: its `reads`) and
gives low-res mask logits [B,1,256,256], through a mask decoder (the
backbone's, or one it tunes) or a network of its own. The trainer's loop
(seeds, batches, schedule, resume, log, collapse recovery, model selection) is
shared; a method owns only its forward pass and the tensors it learns. Its
saved state is those tensors alone: the frozen backbone is never part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from medprompt.backbones import Backbone
from medprompt.backbones.base import decode_batched, decode_with_iou
from medprompt.backbones.sam_modeling import MaskDecoder
from medprompt.common.config_rules import Rule

READS = ("embeddings", "images")


@dataclass(frozen=True)
class Slices:
    """What a method reads for a batch of B slices; a field the method does not read may be None.

    `images` are the slices as the backbone sees them (resized into its input
    frame, min-max scaled to [0,1]), at the resolution of its low-res logits:
    [B,1,256,256], so a network that reads them predicts in the logits' frame.
    `image_size` is the slices' own (H, W): the part of the frame they cover.
    """

    embeddings: torch.Tensor | None = None
    images: torch.Tensor | None = None
    image_size: tuple[int, int] | None = None

    def __getitem__(self, index: Any) -> Slices:
        return Slices(*(None if t is None else t[index] for t in (self.embeddings, self.images)), self.image_size)

    def to(self, device: torch.device) -> Slices:
        """On `device`, in float32."""
        tensors = (None if t is None else t.to(device, torch.float32) for t in (self.embeddings, self.images))
        return Slices(*tensors, self.image_size)


class Method(nn.Module):
    """Base class of the registered methods; subclasses set the class attributes and `forward`."""

    name: ClassVar[str]
    reads: ClassVar[tuple[str, ...]] = ("embeddings",)     # the `Slices` fields it needs (READS)
    supervisions: ClassVar[tuple[str, ...]] = ("boxes", "pseudo_masks", "masks")  # `train --supervision`
    trainable: ClassVar[bool] = True                       # False: nothing to learn, `train` only records the run
    needs_boxes: ClassVar[bool] = False                    # prediction prompts it with the ground-truth boxes
    references: ClassVar[bool] = False                     # `setup` reads the training slices and their masks
    rules: ClassVar[dict[str, Rule]] = {}                  # its own config keys (under `train.<name>.`)

    def __init__(self, backbone: Backbone, train_cfg: dict[str, Any]):
        super().__init__()
        self.__dict__["backbone"] = backbone  # not a submodule: its weights are frozen and not the method's state
        self.reads = self.reads_from(train_cfg)

    @classmethod
    def reads_from(cls, train_cfg: dict[str, Any]) -> tuple[str, ...]:
        """The `Slices` fields a run with these settings reads: `reads`, unless one of the method's options changes it."""
        return cls.reads

    @classmethod
    def check_backbone(cls, backbone: Backbone, train_cfg: dict[str, Any]) -> None:
        """Refuse (MedpromptError) settings this backbone cannot serve, before a run writes anything."""

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """Refuse (MedpromptError) a combination of this method's options that its `rules`, key by key, cannot."""

    def forward(self, slices: Slices) -> torch.Tensor:
        """Low-res logits [B,1,256,256] of the first pass."""
        raise NotImplementedError

    def setup(self, slices: Slices, targets: torch.Tensor) -> None:
        """For a method with `references`: fix what it takes from the training slices and their target masks
        (soft, [N,1,h,w] on the part of the low-res frame that covers the slice) before any training step."""

    @property
    def mask_decoder(self) -> MaskDecoder:
        """The mask decoder this method predicts with: the backbone's, unless the method tunes its own."""
        return self.backbone.mask_decoder

    def decode(self, embeddings: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Low-res logits [B,1,256,256] of this method's mask decoder, given prompts."""
        return decode_batched(self.mask_decoder, self.backbone.image_pe, embeddings, sparse, dense)

    def prompt_with_boxes(self, embeddings: torch.Tensor, boxes: np.ndarray,
                          image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits [B,1,256,256] of this method's decoder prompted with one box per image (slice pixels),
        and the decoder's IoU estimate of each mask [B]."""
        sparse, dense = self.backbone.embed_boxes(boxes, image_size)
        return decode_with_iou(self.mask_decoder, self.backbone.image_pe, embeddings.to(sparse.dtype), sparse, dense)

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


class NetworkMethod(Method):
    """A method whose own network reads the slices [B,1,256,256] and gives the logits: the backbone is not in its
    loop (it still gives the frame, and the pseudo-masks or a second pass when those are asked for)."""

    reads = ("images",)

    def __init__(self, backbone: Backbone, train_cfg: dict[str, Any]):
        super().__init__(backbone, train_cfg)
        self.network = self.build_network(self.options(train_cfg))

    def build_network(self, options: dict[str, Any]) -> nn.Module:
        """The network, one input channel to one output channel at the same resolution."""
        raise NotImplementedError

    def forward(self, slices: Slices) -> torch.Tensor:
        return self.network(slices.images)


PROMPT_OFFSETS = ("training_box", "whole_image_box", "none")


class PromptMethod(Method):
    """A method that learns the decoder's prompts: `prompts` gives (sparse [B,T,256], dense [B,256,64,64])."""

    def prompts(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def image_embeddings(self, slices: Slices) -> torch.Tensor:
        """The embeddings the decoder reads: the cached ones, unless the method runs the encoder itself."""
        return slices.embeddings

    def forward(self, slices: Slices) -> torch.Tensor:
        embeddings = self.image_embeddings(slices)
        sparse, dense = self.prompts(embeddings)
        return self.decode(embeddings, sparse, dense)


def prompt_offset(backbone: Backbone, train_cfg: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The fixed prompts a method starts from (`prompt_offset`: PROMPT_OFFSETS), so that training starts from a
    real mask: the backbone's prompt for the run's `start_box` (the training boxes' median, which `train` records
    in the input frame; the whole frame until it is known) or for a box around the whole frame; None for the
    paper's zero start."""
    kind = train_cfg["prompt_offset"]
    if kind == "none":
        return None
    return backbone.box_prompt(train_cfg.get("start_box") if kind == "training_box" else None)
