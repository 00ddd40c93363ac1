"""SAM's prompt encoder and mask decoder, as every SAM-family backbone here builds them."""

from __future__ import annotations

from torch import nn

from medprompt.backbones.sam_modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

EMBED_DIM = 256
EMBEDDING_GRID = 64


def sam_prompt_encoder(input_size: int) -> PromptEncoder:
    """SAM's prompt encoder for a 64x64 embedding grid and a square input frame of `input_size`."""
    return PromptEncoder(
        embed_dim=EMBED_DIM,
        image_embedding_size=(EMBEDDING_GRID, EMBEDDING_GRID),
        input_image_size=(input_size, input_size),
        mask_in_chans=16,
    )


def sam_mask_decoder(depth: int = 2, mlp_dim: int = 2048, activation: type[nn.Module] = nn.GELU,
                     attention_downsample: int = 2) -> MaskDecoder:
    """SAM's mask decoder; ViT-B (MedSAM, LiteMedSAM) uses depth 2, mlp_dim 2048, GELU, downsampling 2."""
    return MaskDecoder(
        activation=activation,
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=depth, embedding_dim=EMBED_DIM, mlp_dim=mlp_dim, num_heads=8,
                                      attention_downsample_rate=attention_downsample),
        transformer_dim=EMBED_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
