"""unetr: the TransUNet-like baseline, MONAI's 2D UNETR (a ViT encoder on 16x16 patches, a convolutional decoder).

MONAI has no TransUNet. UNETR shares its idea, a ViT-B/16 (12 layers, 768
wide) encoding the slice with skip features decoded by convolutions, without
TransUNet's ResNet-50 stem and without pretrained weights. Reads the slices in
the backbone's low-res frame; the backbone is not in its loop.
"""

from __future__ import annotations

from typing import Any

from monai.networks.nets import UNETR
from torch import nn

from medprompt.common.config_rules import Rule
from medprompt.common.errors import MedpromptError
from medprompt.methods.base import NetworkMethod


class UNETRBaseline(NetworkMethod):
    name = "unetr"
    rules = {"unetr.hidden_size": Rule("int", 12), "unetr.mlp_dim": Rule("int", 1), "unetr.num_heads": Rule("int", 1),
             "unetr.feature_size": Rule("int", 1)}

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        hidden, heads = options.get("hidden_size", 768), options.get("num_heads", 12)
        if hidden % heads:
            raise MedpromptError(f"config key unetr.hidden_size: {hidden} is not a multiple of unetr.num_heads ({heads})")

    def build_network(self, options: dict[str, Any]) -> nn.Module:
        hidden, heads = int(options.get("hidden_size", 768)), int(options.get("num_heads", 12))
        side = self.backbone.spec.low_res
        return UNETR(in_channels=1, out_channels=1, img_size=(side, side), spatial_dims=2, hidden_size=hidden,
                     mlp_dim=int(options.get("mlp_dim", 3072)), num_heads=heads,
                     feature_size=int(options.get("feature_size", 16)))
