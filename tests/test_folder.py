"""Your own volumes in a folder, ten boxes and no mask: preprocess folder -> embed -> train -> predict -> NIfTI."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from helpers import tiny_backbone_args
from medprompt.cli.main import main
from medprompt.data.boxes import boxes_from_mask
from medprompt.data.dataset import PreprocessedDataset
from preprocessing.phantoms import acdc_volume
from tiny_backbone import BOX_SUPERVISION, NO_COLLAPSE_CHECK


def oblique_affine(spacing: tuple[float, float, float], angle: float) -> np.ndarray:
    """A scanner-like affine: rotated in-plane, anisotropic voxels, an offset origin."""
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(spacing)
    affine[:3, 3] = [-90.0, 40.0, 12.5]
    return affine


@pytest.fixture(scope="module")
def own_folder(tmp_path_factory):
    """4 volumes named by the user (no label files) and a CSV of boxes drawn on 10 of their slices."""
    root = tmp_path_factory.mktemp("mine")
    rows = []
    for k in range(4):
        phantom = acdc_volume(np.random.default_rng([7, k]), "ED")
        spacing = tuple(float(v) for v in phantom.spacing)
        image = nib.Nifti1Image(phantom.image.astype(np.float32), oblique_affine(spacing, 0.3 + 0.2 * k))
        image.header.set_qform(image.affine, code=1)
        nib.save(image, root / f"scan_{k}.nii.gz")
        for z in range(phantom.label.shape[2]):
            for x0, y0, x1, y1 in boxes_from_mask(phantom.label[:, :, z].T == 3):
                rows.append((f"scan_{k}", z, x0, y0, x1, y1))
    boxes = pd.DataFrame(rows, columns=["case", "slice_index", "x_min", "y_min", "x_max", "y_max"]).iloc[:10]
    boxes.to_csv(root.parent / "my_boxes.csv", index=False)
    return root


def test_own_volumes_with_ten_boxes_and_no_mask_come_back_in_their_geometry(own_folder, tiny_checkpoint, tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    backbone = tiny_backbone_args(tiny_checkpoint)
    assert main(["preprocess", "folder", str(own_folder), str(data), "--set", "labels={3: lesion}",
                 "--set", "target=lesion", "--set", "geometry.target_spacing=[1.5, 1.5]"]) == 0
    dataset = PreprocessedDataset(data)
    assert not dataset.has_masks and sorted(dataset.manifest.case.unique()) == [f"scan_{k}" for k in range(4)]
    assert main(["embed", str(data), *backbone]) == 0
    assert main(["train", str(data), "--out", str(run), "--boxes", str(own_folder.parent / "my_boxes.csv"),
                 "--epochs", "1", *backbone, "--set", NO_COLLAPSE_CHECK, "--set", BOX_SUPERVISION]) == 0
    assert pd.read_csv(run / "train_boxes.csv").slice_id.nunique() == 10
    source = own_folder / "scan_2.nii.gz"
    assert main(["predict", str(run), str(source), "--out", str(tmp_path / "pred")]) == 0
    predicted, original = nib.load(tmp_path / "pred" / "scan_2.nii.gz"), nib.load(source)
    assert predicted.shape == original.shape
    np.testing.assert_allclose(predicted.affine, original.affine, atol=1e-5)
    assert set(np.unique(np.asanyarray(predicted.dataobj))) <= {0, 3}


def test_label_files_beside_the_images_give_masks_and_are_scored(own_folder, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for k in range(3):
        phantom = acdc_volume(np.random.default_rng([7, k]), "ED")
        affine = oblique_affine(tuple(float(v) for v in phantom.spacing), 0.1)
        nib.save(nib.Nifti1Image(phantom.image.astype(np.float32), affine), raw / f"vol{k}.nii.gz")
        nib.save(nib.Nifti1Image(phantom.label.astype(np.uint8), affine), raw / f"vol{k}_gt.nii.gz")
    data = tmp_path / "data"
    assert main(["preprocess", "folder", str(raw), str(data), "--set", "labels={1: RV, 2: myo, 3: LV}",
                 "--set", "target=LV"]) == 0
    dataset = PreprocessedDataset(data)
    assert dataset.has_masks and dataset.target_label == 3 and set(dataset.manifest.split) == {"train", "val", "test"}
    assert main(["reconstruct", str(data), f"{data / 'slices.h5'}:mask", "--out", str(tmp_path / "rt")]) == 0
    assert main(["evaluate", str(tmp_path / "rt"), str(raw), "--out", str(tmp_path / "rt.csv")]) == 0
    scores = pd.read_csv(tmp_path / "rt.csv")
    assert scores.case.nunique() == 3 and scores.dice.min() > 0.95
