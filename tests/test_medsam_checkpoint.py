"""The real MedSAM ViT-B path: random weights saved as a user's checkpoint, loaded, run."""

import torch

from medprompt.backbones import load_backbone
from medprompt.backbones.checkpoint import sha256_file
from medprompt.backbones.medsam_vit_b import build_medsam_vit_b
from medprompt.backbones.sam_modeling import Sam


def test_vit_b_checkpoint_loads_through_the_users_path(tmp_path):
    torch.manual_seed(0)
    reference = build_medsam_vit_b()
    # save it the way MedSAM's release does: a plain segment-anything `Sam` state dict
    sam = Sam(reference.image_encoder, reference.prompt_encoder, reference.mask_decoder,
              pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375])
    path = tmp_path / "medsam_vit_b.pth"
    torch.save(sam.state_dict(), path)
    del sam, reference

    backbone = load_backbone(checkpoint=path, engine="torch")  # no ONNX export of 90M parameters in a test
    assert backbone.backbone_id == "medsam_vit_b"
    assert backbone.checkpoint_sha256 == sha256_file(path)
    assert sum(p.numel() for p in backbone.image_encoder.parameters()) == 89_670_912
    embedding = backbone.encode(torch.randint(0, 255, (1, 256, 256), dtype=torch.uint8))
    assert embedding.shape == (1, 256, 64, 64)
    assert torch.isfinite(embedding).all()
    logits = backbone.prompt(embedding, torch.tensor([[40.0, 50, 200, 180]]), (256, 256))
    assert logits.shape == (1, 1, 256, 256)
