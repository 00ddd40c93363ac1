"""Reconstruction: per-slice arrays aligned with a manifest back to files in the source geometry and format."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from medprompt.common.config import load_config
from medprompt.common.errors import MedpromptError
from medprompt.data.geometry import SliceGeometry, forward_image, forward_labels
from medprompt.inference.reconstruct import parse_array_spec, reconstruct, reconstruct_dataset
from preprocessing.pipeline import preprocess, preprocess_input

AFFINE = np.array([[-1.2, 0, 0, 10], [0, -1.2, 0, 20], [0, 0, 8.0, -5], [0, 0, 0, 1]])


def smooth_field(shape: tuple[int, ...]) -> np.ndarray:
    grids = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (0.5 + 0.5 * np.sin(grids[0] / 9.0) * np.cos(grids[1] / 7.0)).astype(np.float32)


@pytest.fixture()
def nifti_volume(tmp_path) -> Path:
    """A (50, 60, 4) float volume with a scaled affine and qform = sform, like a scanner export."""
    image = nib.Nifti1Image(smooth_field((50, 60, 4)) * 1000, AFFINE)
    image.header.set_qform(AFFINE, code=1)
    path = tmp_path / "scan.nii.gz"
    nib.save(image, path)
    return path


def slice_geometries(manifest: pd.DataFrame) -> list[SliceGeometry]:
    return [SliceGeometry.from_row(row) for _, row in manifest.iterrows()]


def test_probabilities_come_back_linear_as_float32_nifti(nifti_volume, tmp_path):
    manifest, _ = preprocess_input(nifti_volume, load_config("acdc"))
    source = smooth_field((50, 60, 4)).T
    per_slice = np.stack([forward_image(s, g, "linear") for s, g in zip(source, slice_geometries(manifest))])
    [path] = reconstruct(manifest, per_slice, tmp_path / "out", kind="prob")
    assert path.name == "scan.nii.gz"
    rebuilt, original = nib.load(path), nib.load(nifti_volume)
    assert rebuilt.get_data_dtype() == np.float32 and rebuilt.shape == original.shape
    np.testing.assert_allclose(rebuilt.affine, original.affine)
    assert rebuilt.header.get_zooms() == original.header.get_zooms()
    assert np.abs(rebuilt.get_fdata() - source.T).max() < 0.02


def test_label_volume_round_trip_in_a_non_trivial_affine(nifti_volume, tmp_path):
    manifest, _ = preprocess_input(nifti_volume, load_config("acdc"))
    labels = (smooth_field((50, 60, 4)) > 0.7).astype(np.uint8) * 3
    per_slice = np.stack([forward_labels(s, g) for s, g in zip(labels.T, slice_geometries(manifest))])
    [path] = reconstruct(manifest, per_slice, tmp_path)
    back = np.asanyarray(nib.load(path).dataobj)
    assert back.dtype == np.uint8 and 2 * ((back == 3) & (labels == 3)).sum() / ((back == 3).sum() + (labels == 3).sum()) > 0.98
    assert not list(tmp_path.glob("*.partial"))


def test_png_labels_and_probabilities(tmp_path):
    image = smooth_field((54, 80)) * 255
    cv2.imwrite(str(tmp_path / "001_HC.png"), image.astype(np.uint8))
    manifest, _ = preprocess_input(tmp_path / "001_HC.png", load_config("hc18"))
    [g] = slice_geometries(manifest)
    mask = (smooth_field((54, 80)) > 0.6).astype(np.uint8)
    [single] = reconstruct(manifest, forward_labels(mask, g)[None], tmp_path / "single")
    np.testing.assert_array_equal(cv2.imread(str(single), cv2.IMREAD_UNCHANGED), mask * 255)
    [multi] = reconstruct(manifest, forward_labels(mask * 2, g)[None], tmp_path / "multi")
    np.testing.assert_array_equal(cv2.imread(str(multi), cv2.IMREAD_UNCHANGED), mask * 2)
    [prob] = reconstruct(manifest, forward_image(mask.astype(np.float32), g)[None], tmp_path / "prob", kind="prob")
    np.testing.assert_array_equal(cv2.imread(str(prob), cv2.IMREAD_UNCHANGED), mask * 255)


def write_mhd_case(folder: Path, name: str, rows: int, cols: int) -> None:
    """A CAMUS-like patient folder: (1, rows, cols) image and label with anisotropic spacing and an origin."""
    folder.mkdir(parents=True, exist_ok=True)
    label = np.zeros((1, rows, cols), dtype=np.uint8)
    label[0, rows // 4 : rows // 2, cols // 3 : 2 * cols // 3] = 1
    label[0, rows // 2 : 3 * rows // 4, cols // 3 : 2 * cols // 3] = 3
    for array, suffix in ((label * 60 + 20, ""), (label, "_gt")):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.6, 0.3, 3.0))
        image.SetOrigin((1.5, -2.0, 0.0))
        sitk.WriteImage(image, str(folder / f"{name}{suffix}.mhd"))


def test_dataset_arrays_and_prediction_subsets(tmp_path):
    for i in (1, 2, 3):
        write_mhd_case(tmp_path / "raw" / f"patient000{i}", f"patient000{i}_2CH_ED", 300, 200)
    preprocess("camus", tmp_path / "raw", tmp_path / "data", load_config("camus"))
    manifest = pd.read_csv(tmp_path / "data" / "manifest.csv")
    with h5py.File(tmp_path / "data" / "slices.h5") as f:
        masks = f["mask"][:]
    run = tmp_path / "run"
    run.mkdir()
    with h5py.File(run / "predictions.h5", "w") as f:
        f["mask"] = masks[[2]]
    manifest.iloc[[2]].to_csv(run / "manifest.csv", index=False)
    [path] = reconstruct_dataset(tmp_path / "data", f"{run / 'predictions.h5'}:mask", tmp_path / "out")
    assert path.name == f"{manifest.case.iloc[2]}.mhd"
    rebuilt = sitk.ReadImage(str(path))
    assert rebuilt.GetSpacing() == (0.6, 0.3, 3.0) and rebuilt.GetOrigin() == (1.5, -2.0, 0.0)
    truth = sitk.GetArrayFromImage(sitk.ReadImage(manifest.source_label.iloc[2]))
    assert (sitk.GetArrayFromImage(rebuilt) != truth).mean() < 0.002
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        ".medprompt.lock", path.name, path.with_suffix(".raw").name, "predict_outputs.txt"]
    assert (tmp_path / "out" / "predict_outputs.txt").read_text() == f"{path.name}\n"  # marked complete
    with h5py.File(run / "ids.h5", "w") as f:
        f["probs"] = masks[[0, 1]].astype(np.float32)
        f["slice_id"] = manifest.slice_id.iloc[[0, 1]].to_numpy().astype("S")
    written = reconstruct_dataset(tmp_path / "data", f"{run / 'ids.h5'}:probs", tmp_path / "probs")
    assert len(written) == 2 and sitk.ReadImage(str(written[0])).GetPixelID() == sitk.sitkFloat32


def test_array_spec_and_misaligned_arrays(tmp_path):
    assert parse_array_spec("run/predictions.h5:probs") == (Path("run/predictions.h5"), "probs")
    assert parse_array_spec("data/slices.h5") == (Path("data/slices.h5"), "mask")
    write_mhd_case(tmp_path / "raw" / "patient0001", "patient0001_2CH_ED", 100, 80)
    preprocess("camus", tmp_path / "raw", tmp_path / "data", load_config("camus"))
    with pytest.raises(MedpromptError, match="no array 'nope'"):
        reconstruct_dataset(tmp_path / "data", f"{tmp_path / 'data' / 'slices.h5'}:nope", tmp_path / "out")
    with pytest.raises(MedpromptError, match="missing.h5: file not found"):
        reconstruct_dataset(tmp_path / "data", str(tmp_path / "missing.h5"), tmp_path / "out")
    manifest = pd.read_csv(tmp_path / "data" / "manifest.csv")
    with pytest.raises(MedpromptError, match="2 slices but the manifest has 1"):
        reconstruct(manifest, np.zeros((2, 512, 512), np.uint8), tmp_path / "out")


def test_blank_images_are_refused(tmp_path):
    blank = tmp_path / "blank.nii.gz"
    nib.save(nib.Nifti1Image(np.full((20, 20, 2), 7.0, np.float32), np.eye(4)), blank)
    with pytest.raises(MedpromptError, match="blank.nii.gz: blank image .every pixel is 7.0."):
        preprocess_input(blank, load_config("acdc"))
