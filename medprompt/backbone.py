"""One interface over any SAM-architecture model: encode, decode, box prompts.

The backbone is frozen. Images come in as grey slices [B,H,W] (any size, any
intensity range); embeddings are [B,256,64,64]; low-resolution mask logits are
[B,1,256,256] and cover the whole slice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from medprompt.checkpoint import load_into, read_state_dict, sha256_file
from medprompt.errors import MedpromptError
from medprompt.sam_modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer

EMBED_DIM = 256


class Backbone(nn.Module):
    """A frozen SAM-architecture model (image encoder, prompt encoder, mask decoder)."""

    def __init__(
        self,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        *,
        backbone_id: str,
        input_size: int,
        checkpoint_sha256: str = "",
    ):
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.backbone_id = backbone_id
        self.input_size = input_size
        self.checkpoint_sha256 = checkpoint_sha256
        self.requires_grad_(False)
        self.eval()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def embedding_size(self) -> tuple[int, int]:
        return tuple(self.prompt_encoder.image_embedding_size)

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's mask logits (4x the embedding grid)."""
        return 4 * self.embedding_size[0]

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Grey slices [B,H,W] -> [B,3,S,S]: min-max scaled to [0,1] per image, resized (bicubic), as MedSAM.

        Scaling comes first so that a constant slice stays exactly 0 instead of
        turning the resize's rounding noise into full-range contrast.
        """
        x = images.to(self.device, torch.float32).unsqueeze(1)
        lo = x.amin(dim=(2, 3), keepdim=True)
        hi = x.amax(dim=(2, 3), keepdim=True)
        x = (x - lo) / (hi - lo).clamp_min(1e-8)
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bicubic", align_corners=False, antialias=True)
        return x.clamp(0.0, 1.0).expand(-1, 3, -1, -1)

    @torch.no_grad()
    def encode(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Image embeddings [B,256,64,64] of grey slices [B,H,W]."""
        return self.image_encoder(self.preprocess(torch.as_tensor(images)))

    @property
    def image_pe(self) -> torch.Tensor:
        """Dense positional encoding [1,256,64,64] shared by every image."""
        return self.prompt_encoder.get_dense_pe()

    def no_prompt_dense(self, batch: int) -> torch.Tensor:
        """The dense embedding SAM uses when no mask prompt is given, [B,256,64,64]."""
        h, w = self.embedding_size
        return self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, h, w)

    def decode(self, embeddings: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """Low-res logits [B,1,256,256] for B images, each with its own prompts.

        The installed `MaskDecoder.predict_masks` repeats every image once per
        prompt (B images x B prompts -> B*B masks), so the same computation is
        done here with one prompt set per image.
        """
        decoder = self.mask_decoder
        b = embeddings.shape[0]
        if sparse.shape[0] != b or dense.shape[0] != b:
            raise ValueError(f"decode needs one prompt per image: {b} images, {sparse.shape[0]} sparse, {dense.shape[0]} dense")
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        tokens = torch.cat([output_tokens.unsqueeze(0).expand(b, -1, -1).to(sparse.dtype), sparse], dim=1)
        src = embeddings.to(dense.dtype) + dense
        pos = self.image_pe.to(src.dtype).expand(b, -1, -1, -1)
        _, c, h, w = src.shape
        hs, src = decoder.transformer(src, pos, tokens)
        mask_token = hs[:, 1, :]
        upscaled = decoder.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        hyper = decoder.output_hypernetworks_mlps[0](mask_token)
        _, c_up, h_up, w_up = upscaled.shape
        return (hyper.unsqueeze(1) @ upscaled.reshape(b, c_up, h_up * w_up)).reshape(b, 1, h_up, w_up)

    def embed_boxes(self, boxes: torch.Tensor, image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse [B,2,256] and dense [B,256,64,64] embeddings of one box per image (slice pixels)."""
        h, w = image_size
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=self.device)
        boxes = torch.as_tensor(boxes, dtype=torch.float32, device=self.device) / scale * self.input_size
        return self.prompt_encoder(points=None, boxes=boxes, masks=None)

    @torch.no_grad()
    def prompt(self, embeddings: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Box-prompted low-res logits [B,1,256,256]: MedSAM's own use, the upper bound."""
        sparse, dense = self.embed_boxes(boxes, image_size)
        return self.decode(embeddings.to(sparse.dtype), sparse, dense)


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Low-res logits [B,1,h,w] -> [B,1,H,W] at the slice's size (bilinear)."""
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


def sam_prompt_encoder(input_size: int) -> PromptEncoder:
    """SAM's prompt encoder for a 64x64 embedding grid and a square input of `input_size`."""
    return PromptEncoder(
        embed_dim=EMBED_DIM,
        image_embedding_size=(64, 64),
        input_image_size=(input_size, input_size),
        mask_in_chans=16,
    )


def sam_mask_decoder(depth: int = 2, mlp_dim: int = 2048, activation: type[nn.Module] = nn.GELU,
                     attention_downsample: int = 2) -> MaskDecoder:
    """SAM's mask decoder; ViT-B uses depth 2, mlp_dim 2048, GELU and cross-attention downsampling 2."""
    return MaskDecoder(
        activation=activation,
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=depth, embedding_dim=EMBED_DIM, mlp_dim=mlp_dim, num_heads=8,
                                      attention_downsample_rate=attention_downsample),
        transformer_dim=EMBED_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )


def build_medsam_vit_b(checkpoint_sha256: str = "") -> Backbone:
    """The SAM ViT-B architecture that MedSAM fine-tuned (randomly initialised)."""
    encoder = ImageEncoderViT(
        depth=12,
        embed_dim=768,
        img_size=1024,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=12,
        patch_size=16,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=[2, 5, 8, 11],
        window_size=14,
        out_chans=EMBED_DIM,
    )
    return Backbone(
        encoder,
        sam_prompt_encoder(1024),
        sam_mask_decoder(),
        backbone_id="medsam_vit_b",
        input_size=1024,
        checkpoint_sha256=checkpoint_sha256,
    )


def _sam_state_dict_filter(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop SAM's pixel normalisation buffers: MedSAM's inference does not use them."""
    return {k: v for k, v in state_dict.items() if k not in ("pixel_mean", "pixel_std")}


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one registered backbone and where its default weights are."""

    build: Callable[[str], Backbone]
    architecture: str
    default_weights: str | None = None


def _build_tiny(sha: str) -> Backbone:
    from medprompt.tiny_sam import build_tiny_backbone

    return build_tiny_backbone(checkpoint_sha256=sha)


BACKBONES: dict[str, BackboneSpec] = {
    "medsam_vit_b": BackboneSpec(build_medsam_vit_b, "SAM ViT-B (MedSAM)"),
    "medprompt_tiny": BackboneSpec(_build_tiny, "medprompt tiny SAM", default_weights="medprompt_tiny.safetensors"),
}
DEFAULT_BACKBONE = "medprompt_tiny"


def bundled_weights(name: str) -> Path | None:
    """Path of the weights shipped inside the package for backbone `name`, if any."""
    spec = BACKBONES[name]
    if spec.default_weights is None:
        return None
    path = resources.files("medprompt.weights") / spec.default_weights
    return Path(str(path)) if path.is_file() else None


def load_backbone(
    name: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> Backbone:
    """Build a registered backbone and load its weights (the user's checkpoint or the bundled ones).

    With a checkpoint and no name, the architecture is MedSAM ViT-B.
    """
    if name is None:
        name = "medsam_vit_b" if checkpoint is not None else DEFAULT_BACKBONE
    if name not in BACKBONES:
        raise MedpromptError(f"unknown backbone {name!r}; available: {sorted(BACKBONES)}")
    spec = BACKBONES[name]
    path = Path(checkpoint) if checkpoint is not None else bundled_weights(name)
    if path is None and spec.default_weights is not None:
        raise MedpromptError(
            f"the bundled weights {spec.default_weights} of backbone {name!r} are missing from this installation; "
            "reinstall medprompt or rebuild them with `medprompt pretrain-backbone`"
        )
    if path is None:
        raise MedpromptError(
            f"backbone {name!r} needs --checkpoint (e.g. medsam_vit_b.pth, the MedSAM ViT-B weights you downloaded)"
        )
    state_dict = _sam_state_dict_filter(read_state_dict(path, device))
    backbone = spec.build(sha256_file(path))
    load_into(backbone, state_dict, path, spec.architecture)
    return backbone.to(device)
