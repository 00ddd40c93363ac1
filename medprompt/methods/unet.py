"""unet: the paper's fully supervised baseline, MONAI's 2D UNet trained on the slices themselves.

Reads the slices in the backbone's low-res frame (so its logits sit where the
SAM methods' do) and never runs the backbone; trained from masks with Dice +
cross-entropy as in the paper, or from boxes with the box losses.
"""

from __future__ import annotations

from typing import Any

from monai.networks.nets import UNet
from torch import nn

from medprompt.common.config_rules import Rule
from medprompt.methods.base import NetworkMethod


class UNetBaseline(NetworkMethod):
    name = "unet"
    rules = {"unet.channels": Rule("ints", 1, increasing=True), "unet.num_res_units": Rule("int", 0, 8)}

    def build_network(self, options: dict[str, Any]) -> nn.Module:
        channels = [int(c) for c in options.get("channels", [32, 64, 128, 256, 512])]
        return UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=channels, strides=[2] * (len(channels) - 1),
                    num_res_units=int(options.get("num_res_units", 2)))
