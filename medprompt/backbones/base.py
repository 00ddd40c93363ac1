"""One interface over any SAM-architecture model: encode, decode, box prompts.

The backbone is frozen. Images come in as grey slices [B,H,W] (any size, any
intensity range); embeddings are [B,256,64,64]; low-resolution mask logits are
[B,1,256,256]. Everything about the input frame (size, resize policy, box
scaling, which logits cover the slice) is the backbone's `InputSpec`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from medprompt.backbones.engines import ENGINE_CHOICES, Engine, resolve_engine
from medprompt.backbones.input_spec import InputSpec
from medprompt.backbones.sam_modeling import MaskDecoder, PromptEncoder
from medprompt.common.errors import MedpromptError


class Backbone(nn.Module):
    """A frozen SAM-architecture model (image encoder, prompt encoder, mask decoder) and its input spec.

    Built with random weights; `freeze` (called by the loader once the weights
    are in) switches it to inference mode.
    """

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        *,
        backbone_id: str,
        spec: InputSpec,
        checkpoint_sha256: str = "",
    ):
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.backbone_id = backbone_id
        self.spec = spec
        self.checkpoint_sha256 = checkpoint_sha256
        self.engine_request = "torch"
        self._engine: Engine | None = None
        self.requires_grad_(False)

    def freeze(self) -> Backbone:
        """Inference mode (batch norms use their running statistics); call it after loading weights."""
        self.requires_grad_(False)
        return self.eval()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def input_size(self) -> int:
        return self.spec.size

    @property
    def embedding_size(self) -> tuple[int, int]:
        return tuple(self.prompt_encoder.image_embedding_size)

    def use_engine(self, request: str) -> Backbone:
        """Run `encode` through the inference engine `request` (`engines.ENGINE_CHOICES`), chosen when first used."""
        if request not in ENGINE_CHOICES:
            raise MedpromptError(f"--engine {request!r}: unknown; choose one of {', '.join(ENGINE_CHOICES)}")
        self.engine_request = request
        self._engine = None
        return self

    @property
    def engine(self) -> Engine:
        """The engine `encode` runs on, exported and measured on first use (`engines.resolve_engine`)."""
        if self._engine is None:
            self._engine = resolve_engine(self, self.engine_request)
        return self._engine

    @torch.no_grad()
    def encode(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Image embeddings [B,256,64,64] of grey slices [B,H,W], through the backbone's engine."""
        return self.engine.run(self.spec.preprocess(torch.as_tensor(images).to(self.device)))

    @property
    def encoder_prompt_dims(self) -> tuple[int, ...]:
        """Width of each attention block of an image encoder that takes deep prompts (`encode_frames`); () if none."""
        return tuple(getattr(self.image_encoder, "prompt_dims", ()))

    def encode_frames(self, frames: torch.Tensor, prompts: list[torch.Tensor] | None) -> torch.Tensor:
        """Embeddings [B,256,64,64] of slices already in the input frame ([B,1,S,S] in [0,1], as `Slices.images`
        holds them when the low-res frame is the input frame), with deep prompts, one [P, width] per attention
        block. Not under no_grad: gradients reach the prompts."""
        if frames.shape[-1] != self.spec.size:
            raise ValueError(f"frames of {frames.shape[-1]} pixels; the encoder's input frame is {self.spec.size}")
        return self.image_encoder(frames.expand(-1, 3, -1, -1), prompts)

    @property
    def image_pe(self) -> torch.Tensor:
        """Dense positional encoding [1,256,64,64] shared by every image."""
        return self.prompt_encoder.get_dense_pe()

    @torch.no_grad()
    def box_prompt(self, box: Sequence[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse [1,2,256] embedding of one box in the input frame (x_min, y_min, x_max, y_max; None: the whole
        frame), and the no-mask dense [1,256,1,1]."""
        side = float(self.spec.size - 1)
        box = torch.tensor([[0.0, 0.0, side, side] if box is None else list(box)], device=self.device).float()
        sparse, _ = self.prompt_encoder(points=None, boxes=box, masks=None)
        return sparse, self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)

    def whole_image_prompt(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The prompt of a box around the whole input frame (`box_prompt`)."""
        return self.box_prompt(None)

    def decode(self, embeddings: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Low-res logits [B,1,256,256] for B images, each with its own prompts (see `decode_batched`)."""
        return decode_batched(self.mask_decoder, self.image_pe, embeddings, sparse, dense)

    def embed_boxes(self, boxes: torch.Tensor | np.ndarray, image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse [B,2,256] and dense [B,256,64,64] embeddings of one box per image (slice pixels)."""
        boxes = torch.as_tensor(boxes, dtype=torch.float32, device=self.device).reshape(-1, 4)
        return self.prompt_encoder(points=None, boxes=self.spec.boxes_to_input(boxes, image_size), masks=None)

    @torch.no_grad()
    def prompt(self, embeddings: torch.Tensor, boxes: torch.Tensor | np.ndarray, image_size: tuple[int, int]) -> torch.Tensor:
        """Box-prompted low-res logits [B,1,256,256]: MedSAM's own use, the upper bound."""
        sparse, dense = self.embed_boxes(boxes, image_size)
        return self.decode(embeddings.to(sparse.dtype), sparse, dense)

    def logits_to_image(self, logits: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Low-res logits [B,1,256,256] -> logits [B,1,H,W] on the slice."""
        return self.spec.logits_to_image(logits, image_size)


def decode_batched(decoder: MaskDecoder, image_pe: torch.Tensor, embeddings: torch.Tensor, sparse: torch.Tensor,
                   dense: torch.Tensor) -> torch.Tensor:
    """Low-res logits [B,1,256,256] of `decoder` for B images, each with its own prompts (sparse [B,T,256], T >= 0).

    The installed `MaskDecoder.predict_masks` repeats every image once per
    prompt (B images x B prompts -> B*B masks), so the same computation is done
    here with one prompt set per image. A method may pass its own (tuned) decoder.
    """
    return _decode(decoder, image_pe, embeddings, sparse, dense, 1)[0]


def decode_with_iou(decoder: MaskDecoder, image_pe: torch.Tensor, embeddings: torch.Tensor, sparse: torch.Tensor,
                    dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`decode_batched`'s logits [B,1,256,256] and the decoder's own estimate of each mask's IoU [B] (SAM's IoU
    head on the same pass: what it predicts the mask's overlap with the prompted structure to be)."""
    logits, hs = _decode(decoder, image_pe, embeddings, sparse, dense, 1)
    return logits, decoder.iou_prediction_head(hs[:, 0, :])[:, 0]


def decode_multimask(decoder: MaskDecoder, image_pe: torch.Tensor, embeddings: torch.Tensor, sparse: torch.Tensor,
                     dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's three multimask outputs, low-res logits [B,3,256,256], and the decoder's IoU estimates [B,3]."""
    logits, hs = _decode(decoder, image_pe, embeddings, sparse, dense, decoder.num_mask_tokens)
    return logits[:, 1:], decoder.iou_prediction_head(hs[:, 0, :])[:, 1:]


def _decode(decoder: MaskDecoder, image_pe: torch.Tensor, embeddings: torch.Tensor, sparse: torch.Tensor,
            dense: torch.Tensor, masks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [B,masks,h,w] of the first `masks` mask tokens, and the transformer's token outputs."""
    b = embeddings.shape[0]
    if sparse.shape[0] != b or dense.shape[0] != b:
        raise ValueError(f"decode needs one prompt per image: {b} images, {sparse.shape[0]} sparse, {dense.shape[0]} dense")
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([output_tokens.unsqueeze(0).expand(b, -1, -1).to(sparse.dtype), sparse], dim=1)
    src = embeddings.to(dense.dtype) + dense
    pos = image_pe.to(src.dtype).expand(b, -1, -1, -1)
    _, c, h, w = src.shape
    hs, src = decoder.transformer(src, pos, tokens)
    # The tokens [B,HW,C] viewed channels-last: no copy, and the transposed convolutions run 2-3x faster on a CPU
    upscaled = decoder.output_upscaling(src.reshape(b, h, w, c).permute(0, 3, 1, 2))
    hyper = torch.stack([decoder.output_hypernetworks_mlps[i](hs[:, 1 + i, :]) for i in range(masks)], dim=1)
    return torch.einsum("bmc,bchw->bmhw", hyper, upscaled), hs
