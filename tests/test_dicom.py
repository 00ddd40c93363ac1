"""DICOM series folders in: read in position order with their geometry, refused when broken, and through
preprocess -> embed -> train -> predict to NIfTI in the series' geometry. The series are generated here
(synthetic pixels, real geometry tags); no patient data."""

from __future__ import annotations

import random
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from helpers import tiny_backbone_args
from medprompt.cli.main import main
from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import PreprocessedDataset
from medprompt.data.volume_io import read_volume
from tiny_backbone import BOX_SUPERVISION, NO_COLLAPSE_CHECK

SPACING = (0.8, 0.7, 4.0)
ORIGIN = (-60.0, 35.5, 12.0)


def oblique_direction(angle: float) -> tuple[float, ...]:
    """Direction cosines (row-major 3x3) turned about two axes: an oblique acquisition."""
    c, s = np.cos(angle), np.sin(angle)
    about_z = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, np.cos(angle / 2), -np.sin(angle / 2)], [0, np.sin(angle / 2), np.cos(angle / 2)]])
    return tuple((about_x @ about_z).ravel())


def phantom(seed: int, slices: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """An int16 volume [slices, rows, cols] with a bright ellipsoid, and its label (1 inside)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:slices, :40, :48]
    cz, cy, cx = (slices - 1) / 2, 18 + rng.integers(-3, 4), 24 + rng.integers(-4, 5)
    label = (((z - cz) / (slices / 2.2)) ** 2 + ((y - cy) / 10) ** 2 + ((x - cx) / 12) ** 2 < 1).astype(np.uint8)
    image = (200 + 600 * label.astype(np.float64) + rng.normal(0, 30, label.shape)).astype(np.int16)
    return image, label


def as_image(array: np.ndarray, direction: tuple[float, ...]) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    image.SetDirection(direction)
    return image


def write_series(folder: Path, array: np.ndarray, direction: tuple[float, ...], uid: str = "1.2.826.0.1.3680043.9.7",
                 skip: int | None = None, duplicate: int | None = None) -> Path:
    """One file per slice under shuffled names, with position, orientation and spacing tags."""
    folder.mkdir(parents=True, exist_ok=True)
    image = as_image(array, direction)
    names = [f"IM{n:04d}.dcm" for n in random.Random(len(array)).sample(range(1000), len(array) + 1)]
    indices = [k for k in range(len(array)) if k != skip] + ([duplicate] if duplicate is not None else [])
    for name, k in zip(names, indices):
        write_slice(folder / name, image, k, uid, direction)
    return folder


def write_slice(path: Path, image: sitk.Image, k: int, uid: str, direction: tuple[float, ...]) -> None:
    plane = image[:, :, k]
    tags = {"0008|0060": "MR", "0020|000d": "1.2.826.0.1.3680043.9.6", "0020|000e": uid, "0010|0010": "Phantom^Test",
            "0020|0013": str(k + 1), "0020|0032": "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0037": "\\".join(f"{v:.6f}" for v in (direction[0], direction[3], direction[6],
                                                         direction[1], direction[4], direction[7])),
            "0018|0050": str(SPACING[2])}
    for key, value in tags.items():
        plane.SetMetaData(key, value)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(path))
    writer.Execute(plane)


def test_a_series_in_shuffled_files_is_read_in_position_order_with_its_geometry(tmp_path):
    image, _ = phantom(0)
    direction = oblique_direction(0.4)
    array, meta = read_volume(write_series(tmp_path / "series", image, direction))
    np.testing.assert_array_equal(array, image)
    assert meta.format == ".dcm" and meta.output_suffix == ".nii.gz"
    np.testing.assert_allclose(meta.spacing, SPACING, atol=1e-4)
    np.testing.assert_allclose(meta.origin, ORIGIN, atol=1e-4)
    np.testing.assert_allclose(meta.direction, direction, atol=1e-5)


@pytest.mark.parametrize("broken, fragment", [
    ({"skip": 3}, "uneven slice spacing: a gap of 8.00 mm"),
    ({"duplicate": 2}, "two slices at the same position"),
])
def test_a_missing_or_duplicated_slice_is_refused(tmp_path, broken, fragment):
    image, _ = phantom(1)
    folder = write_series(tmp_path / "series", image, oblique_direction(0.2), **broken)
    with pytest.raises(MedpromptError, match=fragment):
        read_volume(folder)


def test_a_localizer_among_the_files_and_two_series_in_one_folder_are_refused(tmp_path):
    image, _ = phantom(2)
    folder = write_series(tmp_path / "series", image, oblique_direction(0.2))
    sideways = oblique_direction(1.2)
    write_slice(folder / "LOCALIZER.dcm", as_image(image, sideways), 0, "1.2.826.0.1.3680043.9.7", sideways)
    with pytest.raises(MedpromptError, match="different orientations.*localizer"):
        read_volume(folder)
    two = write_series(tmp_path / "two", image, oblique_direction(0.2))
    for path in write_series(tmp_path / "other", image, oblique_direction(0.2), uid="1.2.826.0.1.3680043.9.8").iterdir():
        path.rename(two / f"B{path.name}")
    with pytest.raises(MedpromptError, match="holds 2 DICOM series"):
        read_volume(two)


def test_series_go_through_the_pipeline_and_come_back_in_their_geometry(tmp_path, tiny_checkpoint):
    raw = tmp_path / "scans"
    for k in range(4):
        image, label = phantom(10 + k)
        direction = oblique_direction(0.2 + 0.1 * k)
        write_series(raw / f"scan_{k}", image, direction)
        sitk.WriteImage(as_image(label, direction), str(raw / f"scan_{k}_gt.nii.gz"))
    data, run, backbone = tmp_path / "data", tmp_path / "run", tiny_backbone_args(tiny_checkpoint)
    assert main(["preprocess", "folder", str(raw), str(data), "--set", "labels={1: blob}", "--set", "target=blob",
                 "--set", "splits.sizes={train: 2, val: 1, test: 1}"]) == 0
    dataset = PreprocessedDataset(data)
    assert sorted(dataset.manifest.case.unique()) == [f"scan_{k}" for k in range(4)]
    assert set(dataset.manifest.source_format) == {".dcm"}
    # the preprocessed masks, written back, are the label volumes voxel for voxel: the slices lie where they belong
    assert main(["reconstruct", str(data), f"{data / 'slices.h5'}:mask", "--out", str(tmp_path / "roundtrip")]) == 0
    for k in range(4):
        back = nib.load(tmp_path / "roundtrip" / f"scan_{k}.nii.gz")
        truth = nib.load(raw / f"scan_{k}_gt.nii.gz")
        np.testing.assert_allclose(back.affine, truth.affine, atol=1e-4)
        np.testing.assert_array_equal(np.asarray(back.dataobj), np.asarray(truth.dataobj))
    assert main(["embed", str(data), *backbone]) == 0
    assert main(["train", str(data), "--out", str(run), "--shots", "4", "--epochs", "1", *backbone,
                 "--set", NO_COLLAPSE_CHECK, "--set", BOX_SUPERVISION]) == 0
    # the same series given as DICOM and as its NIfTI conversion: the same masks on the same grid
    series = raw / "scan_3"
    converted = tmp_path / "converted" / "scan_3.nii.gz"
    converted.parent.mkdir()
    sitk.WriteImage(sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series))), str(converted))
    assert main(["predict", str(run), str(series), "--out", str(tmp_path / "from_dicom")]) == 0
    assert main(["predict", str(run), str(converted), "--out", str(tmp_path / "from_nifti")]) == 0
    from_dicom, from_nifti = nib.load(tmp_path / "from_dicom" / "scan_3.nii.gz"), nib.load(tmp_path / "from_nifti" / "scan_3.nii.gz")
    np.testing.assert_allclose(from_dicom.affine, from_nifti.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(from_dicom.dataobj), np.asarray(from_nifti.dataobj))
    assert sorted(p.suffix for p in series.iterdir()) == [".dcm"] * 6  # nothing written into the series folder
