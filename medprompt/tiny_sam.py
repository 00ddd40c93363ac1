"""The bundled backbone: a small SAM-architecture model that runs on a laptop CPU.

It keeps MedSAM's contract (256x64x64 image embeddings, SAM's prompt encoder,
SAM's two-way-transformer mask decoder, 256x256 low-res logits) with a compact
convolutional image encoder on 256x256 inputs and a lighter decoder, so the
prompt module, the losses and the trainer run on it unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from medprompt.backbone import EMBED_DIM, Backbone, sam_mask_decoder, sam_prompt_encoder
from medprompt.sam_modeling import modeling

LayerNorm2d = modeling.common.LayerNorm2d

INPUT_SIZE = 256
DECODER_DEPTH = 2
DECODER_MLP_DIM = 512


def conv_bn(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """3x3 convolution, batch norm, GELU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.GELU(),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(channels, channels, dilation=dilation),
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x + self.body(x))


class TinyImageEncoder(nn.Module):
    """256x256x3 image -> 256x64x64 embedding, through three scales fused at 64x64."""

    def __init__(self, widths: tuple[int, int, int] = (48, 96, 160)):
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(conv_bn(3, 24, stride=2), conv_bn(24, w1, stride=2))
        self.scale1 = ResidualBlock(w1)
        self.down2 = conv_bn(w1, w2, stride=2)
        self.scale2 = nn.Sequential(ResidualBlock(w2), ResidualBlock(w2, dilation=2))
        self.down3 = conv_bn(w2, w3, stride=2)
        self.scale3 = nn.Sequential(ResidualBlock(w3), ResidualBlock(w3, dilation=2))
        self.neck = nn.Sequential(
            nn.Conv2d(w1 + w2 + w3, EMBED_DIM, 1, bias=False),
            LayerNorm2d(EMBED_DIM),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.scale1(self.stem(x))
        f2 = self.scale2(self.down2(f1))
        f3 = self.scale3(self.down3(f2))
        size = f1.shape[-2:]
        fused = torch.cat(
            [
                f1,
                F.interpolate(f2, size=size, mode="bilinear", align_corners=False),
                F.interpolate(f3, size=size, mode="bilinear", align_corners=False),
            ],
            dim=1,
        )
        return self.neck(fused)


def build_tiny_backbone(checkpoint_sha256: str = "", seed: int | None = None) -> Backbone:
    """The bundled architecture; random weights (seeded when `seed` is given) until loaded."""
    if seed is not None:
        torch.manual_seed(seed)
    return Backbone(
        TinyImageEncoder(),
        sam_prompt_encoder(INPUT_SIZE),
        sam_mask_decoder(depth=DECODER_DEPTH, mlp_dim=DECODER_MLP_DIM, activation=nn.ReLU),
        backbone_id="medprompt_tiny",
        input_size=INPUT_SIZE,
        checkpoint_sha256=checkpoint_sha256,
    )
