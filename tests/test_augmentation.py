"""Training-slice augmentation: the slice, its target and its box move together, reproducibly; never with
cached embeddings."""

import numpy as np
import pytest
import torch

from medprompt.common.errors import MedpromptError
from medprompt.methods import Slices
from medprompt.training.augmentation import AugmentConfig, SliceAugmentation
from medprompt.training.recipe import load_train_config
from medprompt.training.run import train
from tiny_backbone import NO_COLLAPSE_CHECK

CROP = (256, 192)  # the part of the 256 frame a 64x48 slice covers


def square_batch():
    images = torch.zeros(2, 1, 256, 256)
    images[:, :, 100:150, 60:120] = 0.8
    targets = torch.zeros(2, 1, *CROP)
    targets[:, :, 100:150, 60:120] = 1.0
    boxes = [np.array([[60, 100, 119, 149]]), np.array([[60, 100, 119, 149]])]
    return Slices(None, images, (64, 48)), targets, boxes


def test_the_slice_its_target_and_its_box_move_together_and_reproducibly():
    augment = SliceAugmentation(AugmentConfig(enabled=True, contrast=0.0), 256, CROP)
    slices, targets, boxes = square_batch()
    moved, moved_targets, moved_boxes = augment(slices, targets, boxes, (0, 3, 1))
    assert moved.images.shape == (2, 1, 256, 256) and moved_targets.shape == (2, 1, *CROP)
    for image, target, box in zip(moved.images, moved_targets, moved_boxes):
        ys, xs = np.nonzero(target[0].numpy() > 0.5)
        assert np.abs(box[0] - [xs.min(), ys.min(), xs.max(), ys.max()]).max() <= 1
        assert torch.equal(image[0, : CROP[0], : CROP[1]] > 0.4, target[0] > 0.5)
    assert not torch.equal(moved_targets, targets)
    again = augment(slices, targets, boxes, (0, 3, 1))
    assert torch.equal(again[0].images, moved.images) and torch.equal(again[1], moved_targets)
    assert not torch.equal(augment(slices, targets, boxes, (0, 3, 2))[1], moved_targets)


def test_no_range_is_the_identity():
    augment = SliceAugmentation(AugmentConfig(enabled=True, rotate=0, scale=0, translate=0, contrast=0), 256, CROP)
    slices, targets, boxes = square_batch()
    moved, moved_targets, moved_boxes = augment(slices, targets, boxes, (0, 0, 0))
    assert torch.allclose(moved.images, slices.images, atol=1e-5) and torch.allclose(moved_targets, targets, atol=1e-5)
    assert [b.tolist() for b in moved_boxes] == [b.tolist() for b in boxes]


def test_methods_that_read_embeddings_are_not_augmented(setup, tmp_path):
    dataset, backbone = setup
    cfg = load_train_config("conv_fc", overrides=["augment.enabled=true", NO_COLLAPSE_CHECK, "shots=2"])
    with pytest.raises(MedpromptError, match="augment.enabled: method conv_fc reads cached embeddings"):
        train(dataset, backbone, cfg, tmp_path / "run", progress=False)
    cfg = load_train_config("unet", overrides=["refine.distill=0.5", "shots=2"])
    with pytest.raises(MedpromptError, match="augment.enabled: the second pass"):
        train(dataset, backbone, cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
