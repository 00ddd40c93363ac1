"""The bundled backbone: a small SAM-architecture model that runs on a laptop CPU.

It keeps MedSAM's contract (256x64x64 image embeddings, SAM's prompt encoder,
SAM's two-way-transformer mask decoder, 256x256 low-res logits) with a compact
convolutional image encoder on 256x256 inputs and a lighter decoder (two
two-way blocks with a 256-wide MLP and cross-attention narrowed to 64
channels), so the prompt module, the losses and the trainer run on it
unchanged and fast on a CPU.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from medprompt.backbone import EMBED_DIM, Backbone, sam_mask_decoder, sam_prompt_encoder
from medprompt.sam_modeling import modeling

LayerNorm2d = modeling.common.LayerNorm2d

INPUT_SIZE = 256
WIDTHS = (32, 64, 128, 192)
DECODER_DEPTH = 2
DECODER_MLP_DIM = 256
DECODER_ATTENTION_DOWNSAMPLE = 4


def norm(channels: int) -> nn.GroupNorm:
    """Group norm: batch-independent, so pretraining on mixed small batches and frozen use normalise alike."""
    return nn.GroupNorm(8, channels)


def conv_bn(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """3x3 convolution, group norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        norm(c_out),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(channels, channels, dilation=dilation),
            nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False),
            norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class TinyImageEncoder(nn.Module):
    """256x256x3 image -> 256x64x64 embedding: a four-scale ResNet whose features are summed at 64x64 (FPN).

    Each scale is projected to 256 channels at its own resolution before being
    upsampled, so the costly 64x64 maps are touched only by cheap operations; the
    coarsest scales (16x16, 8x8, dilated) give every cell the context of the whole slice.
    """

    def __init__(self, widths: tuple[int, int, int, int] = WIDTHS):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.stem = nn.Sequential(conv_bn(3, 16, stride=2), conv_bn(16, w1, stride=2))
        self.scale1 = ResidualBlock(w1)
        self.scale2 = nn.Sequential(conv_bn(w1, w2, stride=2), ResidualBlock(w2), ResidualBlock(w2))
        self.scale3 = nn.Sequential(conv_bn(w2, w3, stride=2), ResidualBlock(w3), ResidualBlock(w3, dilation=2))
        self.scale4 = nn.Sequential(conv_bn(w3, w4, stride=2), ResidualBlock(w4), ResidualBlock(w4, dilation=2))
        self.lateral = nn.ModuleList(nn.Conv2d(w, EMBED_DIM, 1) for w in widths)
        self.norm = LayerNorm2d(EMBED_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.scale1(self.stem(x))
        f2 = self.scale2(f1)
        f3 = self.scale3(f2)
        f4 = self.scale4(f3)
        out = self.lateral[3](f4)
        for feature, lateral in ((f3, self.lateral[2]), (f2, self.lateral[1]), (f1, self.lateral[0])):
            out = lateral(feature) + F.interpolate(out, size=feature.shape[-2:], mode="bilinear", align_corners=False)
        return self.norm(out)


def build_tiny_backbone(checkpoint_sha256: str = "", seed: int | None = None) -> Backbone:
    """The bundled architecture; random weights (seeded when `seed` is given) until loaded."""
    if seed is not None:
        torch.manual_seed(seed)
    return Backbone(
        TinyImageEncoder(),
        sam_prompt_encoder(INPUT_SIZE),
        sam_mask_decoder(DECODER_DEPTH, DECODER_MLP_DIM, nn.ReLU, DECODER_ATTENTION_DOWNSAMPLE),
        backbone_id="medprompt_tiny",
        input_size=INPUT_SIZE,
        checkpoint_sha256=checkpoint_sha256,
    )
