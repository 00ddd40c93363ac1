"""Orientations: flipped and turned training slices, their boxes and masks moved alike, encoded once; and the
first pass averaged over a new slice's orientations at prediction."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from medprompt.cli.main import build_parser, main
from medprompt.common.config import load_config
from medprompt.common.errors import MedpromptError
from medprompt.data.boxes import boxes_from_mask
from medprompt.data.dataset import PreprocessedDataset, write_dataset
from medprompt.inference.segment import segment_images
from medprompt.methods import Slices
from medprompt.methods.orientations import ORIENTATION_SETS, add_orientations, orient_array, orient_boxes
from medprompt.methods.run_dir import load_trained
from medprompt.training.run import check_run_request, train
from medprompt.training.trainer import Trainer
from tiny_backbone import BOX_SUPERVISION, NO_COLLAPSE_CHECK


def two_structures(shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[1:3, 0:2] = True
    mask[4, 3:5] = True
    return mask


@pytest.mark.parametrize("shape", [(6, 6), (6, 9)])
def test_every_orientation_moves_the_boxes_as_it_moves_the_pixels(shape):
    mask = two_structures(shape)
    for orientation in ORIENTATION_SETS["dihedral"]:
        moved = orient_array(mask, orientation)
        got = orient_boxes(boxes_from_mask(mask), orientation, shape)
        assert sorted(got.tolist()) == sorted(boxes_from_mask(moved).tolist()), orientation


def test_the_sets_are_the_flips_and_the_squares_symmetries():
    image = np.arange(16).reshape(4, 4)
    seen = {orient_array(image, v).tobytes() for v in ORIENTATION_SETS["dihedral"]} | {image.tobytes()}
    assert len(seen) == 8  # as it is, and seven distinct orientations
    flips = [orient_array(image, v) for v in ORIENTATION_SETS["flips"]]
    assert [f.tolist() for f in flips] == [image[:, ::-1].tolist(), image[::-1].tolist(), image[::-1, ::-1].tolist()]
    assert ORIENTATION_SETS["none"] == ()


def test_orientations_are_encoded_from_the_moved_slices(setup):
    dataset, backbone = setup
    rows = np.array([0, 5])
    boxes = [np.array([[3, 4, 10, 20]]), np.array([[30, 31, 40, 41]])]
    masks = dataset.masks(rows) == 1
    original = Slices(torch.zeros(2, 256, 64, 64, dtype=torch.float16), None, (64, 64))
    oriented = add_orientations(original, dataset, rows, boxes, masks, "flips", backbone, ("embeddings",), progress=False)
    assert oriented.slices.embeddings.shape == (8, 256, 64, 64) and oriented.slices.embeddings.dtype == torch.float16
    assert torch.equal(oriented.slices.embeddings[:2], original.embeddings)
    with torch.no_grad():
        upside_down = backbone.encode(torch.from_numpy(dataset.images(rows)[:, ::-1].copy())).half()
    # the second orientation, rows reversed; to fp16's last bit, as the engine that `auto` picks by speed may
    # encode a batch of 6 and one of 2 differently (the other orientations differ by 0.7)
    torch.testing.assert_close(oriented.slices.embeddings[4:6].float(), upside_down.float(), rtol=0, atol=4e-3)
    assert oriented.boxes[4].tolist() == [[3, 43, 10, 59]] and oriented.boxes[7].tolist() == [[23, 22, 33, 32]]
    assert np.array_equal(oriented.masks[5], masks[1][::-1])
    frames = Slices(None, backbone.spec.low_res_images(torch.from_numpy(dataset.images(rows))), (64, 64))
    turned = add_orientations(frames, dataset, rows, boxes, None, "flips", backbone, ("images",), progress=False)
    assert turned.slices.embeddings is None and turned.slices.images.shape == (8, 1, 256, 256)
    assert torch.allclose(turned.slices.images[2:4], frames.images.flip(-1), atol=1e-5)  # first: columns reversed


def test_none_adds_nothing_and_turns_need_square_slices(tmp_path, tiny_checkpoint):
    from medprompt.backbones import load_backbone

    manifest = pd.DataFrame({"slice_id": ["a"], "dataset": ["x"], "case": ["a"], "split": ["train"], "frame": [""],
                             "slice_index": [0], "has_target": [True]})
    image = np.random.default_rng(0).integers(0, 255, (1, 32, 48), dtype=np.uint8)
    dataset = PreprocessedDataset(write_dataset(tmp_path / "wide", manifest, image, None, {"target_label": 1}))
    backbone = load_backbone("tiny_test", tiny_checkpoint)
    slices = Slices(torch.zeros(1, 256, 64, 64), None, (32, 48))
    boxes = [np.array([[1, 2, 3, 4]])]
    kept = add_orientations(slices, dataset, np.array([0]), boxes, None, "none", backbone, ("embeddings",))
    assert kept.slices is slices and kept.boxes is boxes
    assert len(add_orientations(slices, dataset, np.array([0]), boxes, None, "flips", backbone, ("embeddings",),
                         progress=False).boxes) == 4
    with pytest.raises(MedpromptError, match="orientations=dihedral: the slices are 32 x 48; .* use orientations=flips"):
        add_orientations(slices, dataset, np.array([0]), boxes, None, "dihedral", backbone, ("embeddings",))
    cfg = load_config("train", overrides=[BOX_SUPERVISION, "orientations=dihedral"])
    with pytest.raises(MedpromptError, match="orientations=dihedral: the slices are 32 x 48"):
        check_run_request(dataset, cfg, tmp_path / "run")  # before any backbone is loaded
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_each_epoch_sees_every_training_slice_once_in_a_drawn_orientation(setup, tmp_path, monkeypatch):
    dataset, backbone = setup
    seen = []
    original = Trainer.step
    monkeypatch.setattr(Trainer, "step", lambda self, batch, index: seen.append(batch) or original(self, batch, index))
    cfg = load_config("train", overrides=[NO_COLLAPSE_CHECK, BOX_SUPERVISION, "shots=3", "epochs=6", "orientations=dihedral"])
    run = train(dataset, backbone, cfg, tmp_path / "run", progress=False)
    assert len(seen) == 6  # 3 slices: one batch an epoch
    assert all(sorted(batch % 3) == [0, 1, 2] for batch in seen)  # every slice once, as it is or in one of 7 orientations
    assert len({int(p) // 3 for batch in seen for p in batch}) > 3  # position 3k+i: orientation k of slice i
    assert pd.read_csv(run / "train_log.csv").epoch.tolist() == [1, 2, 3, 4, 5, 6]
    assert pd.read_csv(run / "train_boxes.csv").slice_id.nunique() == 3  # the record keeps the user's slices


def test_averaging_the_first_pass_over_orientations_makes_it_follow_the_slice(finished_run, embedded):
    model = load_trained(finished_run, torch.device("cpu"))
    images = PreprocessedDataset(embedded).images(np.arange(2))
    for name, orientation in (("flips", ORIENTATION_SETS["flips"][0]), ("dihedral", ORIENTATION_SETS["dihedral"][3])):
        probs = segment_images(model.method, images, progress=False, orientations=name).probs
        turned = segment_images(model.method, orient_array(images, orientation), progress=False,
                                orientations=name).probs
        assert np.allclose(orient_array(probs, orientation), turned, atol=1e-5), name
    plain = segment_images(model.method, images, progress=False).probs
    assert not np.allclose(orient_array(plain, ORIENTATION_SETS["flips"][0]),
                           segment_images(model.method, orient_array(images, ORIENTATION_SETS["flips"][0]),
                                          progress=False).probs,
                           atol=1e-5)  # a single pass does not: the check above can fail


def test_predict_averages_over_the_orientations_it_is_given(finished_run, embedded, tmp_path):
    out = tmp_path / "predictions"
    assert main(["predict", str(finished_run), str(embedded), "--out", str(out), "--orientations", "dihedral"]) == 0
    with h5py.File(out / "predictions.h5") as f:
        assert f.attrs["orientations"] == "dihedral"
    choices = next(a.choices for a in build_parser()._subparsers._group_actions[0].choices["predict"]._actions
                   if a.dest == "orientations")
    assert choices == list(ORIENTATION_SETS)
