"""autosam: AutoSAM's idea (Shaharabany et al. 2023): a CNN reads the slice and gives the mask decoder's dense
prompt embedding; the image embedding comes from the frozen encoder's cache and the decoder stays frozen.

AutoSAM's CNN is a HarDNet-85 encoder-decoder (41.6M parameters, ImageNet
weights) that we cannot ship; this one is built from MONAI blocks without
pretrained weights: strided convolutions take the slice [B,1,256,256] down to
the embedding grid (64x64), then a residual MONAI UNet at that grid gives the
256 channels, and a 1x1 convolution that starts at zero ends it, so training starts from the
method's fixed prompts: with `prompt_offset: none`, AutoSAM's own (no sparse
prompt, the dense embedding alone), on which LiteMedSAM draws the empty mask;
else the backbone's prompt for the start box (the training boxes' median, or
the whole frame) added to them.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets import UNet
from torch import nn

from medprompt.backbones import Backbone
from medprompt.common.config_rules import Rule
from medprompt.methods.base import Method, Slices, prompt_offset


class AutoSAM(Method):
    name = "autosam"
    reads = ("images", "embeddings")
    rules = {"autosam.channels": Rule("ints", 1, increasing=True), "autosam.num_res_units": Rule("int", 0, 8)}

    def __init__(self, backbone: Backbone, train_cfg: dict[str, Any]):
        super().__init__(backbone, train_cfg)
        options = self.options(train_cfg)
        channels = [int(c) for c in options.get("channels", [64, 128, 256, 512])]
        dim = backbone.prompt_encoder.embed_dim
        downsamplings = int(round(math.log2(backbone.spec.low_res / backbone.embedding_size[0])))
        widths = [1, *[channels[0] // 2 ** (downsamplings - 1 - i) for i in range(downsamplings)]]
        stem = [Convolution(2, a, b, strides=2, kernel_size=3) for a, b in zip(widths, widths[1:])]
        body = UNet(spatial_dims=2, in_channels=widths[-1], out_channels=dim, channels=channels,
                    strides=[2] * (len(channels) - 1), num_res_units=int(options.get("num_res_units", 2)))
        head = nn.Conv2d(dim, dim, kernel_size=1)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        self.cnn = nn.Sequential(*stem, body, head)
        offset = prompt_offset(backbone, train_cfg)
        sparse, dense = offset if offset is not None else (torch.zeros(1, 0, dim), torch.zeros(1, dim, 1, 1))
        self.register_buffer("fixed_sparse", sparse.detach().reshape(1, -1, dim).clone())
        self.register_buffer("fixed_dense", dense.detach().reshape(1, dim, 1, 1).clone())

    def forward(self, slices: Slices) -> torch.Tensor:
        sparse = self.fixed_sparse.expand(len(slices.embeddings), -1, -1)
        return self.decode(slices.embeddings, sparse, self.fixed_dense + self.cnn(slices.images))
