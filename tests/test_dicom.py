"""DICOM series folders in: read in position order with their geometry, refused when broken, and through
preprocess -> embed -> train -> predict to NIfTI in the series' geometry. The series are generated here
(synthetic pixels, real geometry tags); no patient data."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from dicom_files import write_series, write_slice
from helpers import tiny_backbone_args
from medprompt.cli.annotate import case_images
from medprompt.cli.main import main
from medprompt.common.errors import MedpromptError
from medprompt.data.boxes import boxes_from_mask
from medprompt.data.dataset import PreprocessedDataset
from medprompt.data.volume_io import read_volume
from medprompt.inference.dicom_seg import read_seg, source_instances, write_seg
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


def test_a_series_in_shuffled_files_is_read_in_position_order_with_its_geometry(tmp_path):
    image, _ = phantom(0)
    direction = oblique_direction(0.4)
    array, meta = read_volume(write_series(tmp_path / "series", as_image(image, direction)))
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
    folder = write_series(tmp_path / "series", as_image(image, oblique_direction(0.2)), **broken)
    with pytest.raises(MedpromptError, match=fragment):
        read_volume(folder)


def test_a_localizer_among_the_files_and_two_series_in_one_folder_are_refused(tmp_path):
    image, _ = phantom(2)
    folder = write_series(tmp_path / "series", as_image(image, oblique_direction(0.2)))
    sideways = oblique_direction(1.2)
    write_slice(folder / "LOCALIZER.dcm", as_image(image, sideways), 0)
    with pytest.raises(MedpromptError, match="different orientations.*localizer"):
        read_volume(folder)
    two = write_series(tmp_path / "two", as_image(image, oblique_direction(0.2)))
    other = write_series(tmp_path / "other", as_image(image, oblique_direction(0.2)), uid="1.2.826.0.1.3680043.9.8")
    for path in other.iterdir():
        path.rename(two / f"B{path.name}")
    with pytest.raises(MedpromptError, match="holds 2 DICOM series"):
        read_volume(two)


def test_a_dicom_seg_references_its_series_and_reads_back_equal(tmp_path):
    image, label = phantom(4, slices=7)
    label[0] = 0  # an empty slice: no frame is stored for it, and it reads back empty
    series = write_series(tmp_path / "series", as_image(image, oblique_direction(0.3)))
    path = write_seg(label, series, tmp_path / "out" / "series.seg.dcm", "blob", "conv_fc")
    np.testing.assert_array_equal(read_seg(path, series), label > 0)
    seg, sources = pydicom.dcmread(path), source_instances(series)
    assert seg.Modality == "SEG" and seg.NumberOfFrames == 6
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert seg.SegmentSequence[0].SegmentLabel == "blob"
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {str(s.SOPInstanceUID) for s in sources}
    other = write_series(tmp_path / "other", as_image(image, oblique_direction(0.3)), uid="1.2.826.0.1.3680043.9.4")
    with pytest.raises(MedpromptError, match="references instances that are not in"):
        read_seg(path, other)
    with pytest.raises(MedpromptError, match="a mask of shape \\(6, 40, 48\\) for a series of 7 slices"):
        write_seg(label[1:], series, tmp_path / "bad.seg.dcm", "blob", "conv_fc")
    assert not (tmp_path / "bad.seg.dcm").exists()


def test_annotate_offers_a_folders_series_slice_by_slice_in_position_order(tmp_path):
    image, label = phantom(5)
    direction = oblique_direction(0.25)
    write_series(tmp_path / "scans" / "scan_a", as_image(image, direction))
    sitk.WriteImage(as_image(label, direction), str(tmp_path / "scans" / "scan_a_gt.nii.gz"))
    images = case_images(tmp_path / "scans", None)
    index = images.index_of("scan_a")
    assert images.case(index).label == tmp_path / "scans" / "scan_a_gt.nii.gz"
    assert images.slice_indices(index) == tuple(range(6))
    for z in range(6):
        np.testing.assert_array_equal(images.image_slice(index, z), image[z])


def label_volume(raw: Path, case: str) -> np.ndarray:
    """The label map beside series `case`, [slices, rows, cols] in the series' position order."""
    return read_volume(raw / f"{case}_gt.nii.gz")[0]


def test_series_go_through_the_pipeline_and_come_back_in_their_geometry(tmp_path, tiny_checkpoint, capsys):
    raw = tmp_path / "scans"
    for k in range(4):
        image, label = phantom(10 + k)
        direction = oblique_direction(0.2 + 0.1 * k)
        write_series(raw / f"scan_{k}", as_image(image, direction))
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
    # boxes drawn on the series' slices (source pixels, slice index in position order) land on their structure
    train = dataset.manifest[dataset.manifest.split == "train"]
    rows = [(case, z, *boxes_from_mask(label_volume(raw, case)[z])[0]) for case in train.case.unique()
            for z in range(6) if label_volume(raw, case)[z].any()]
    pd.DataFrame(rows, columns=["case", "slice_index", "x_min", "y_min", "x_max", "y_max"]).to_csv(
        tmp_path / "boxes.csv", index=False)
    assert main(["embed", str(data), *backbone]) == 0
    assert main(["train", str(data), "--out", str(run), "--boxes", str(tmp_path / "boxes.csv"), "--epochs", "1",
                 *backbone, "--set", NO_COLLAPSE_CHECK, "--set", BOX_SUPERVISION]) == 0
    used = pd.read_csv(run / "train_boxes.csv", dtype={"slice_id": str})
    assert len(used) == len(rows)
    for box in used.itertuples():
        truth = boxes_from_mask(dataset.masks([dataset.index_of[box.slice_id]])[0] > 0)[0]
        np.testing.assert_allclose([box.x_min, box.y_min, box.x_max, box.y_max], truth, atol=2)
    # the same series given as DICOM and as its NIfTI conversion: the same masks on the same grid
    series = raw / "scan_3"
    converted = tmp_path / "converted" / "scan_3.nii.gz"
    converted.parent.mkdir()
    sitk.WriteImage(sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(series))), str(converted))
    assert main(["predict", str(run), str(series), "--format", "dicom-seg", "--out", str(tmp_path / "from_dicom")]) == 0
    assert main(["predict", str(run), str(converted), "--out", str(tmp_path / "from_nifti")]) == 0
    from_dicom, from_nifti = nib.load(tmp_path / "from_dicom" / "scan_3.nii.gz"), nib.load(tmp_path / "from_nifti" / "scan_3.nii.gz")
    np.testing.assert_allclose(from_dicom.affine, from_nifti.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(from_dicom.dataobj), np.asarray(from_nifti.dataobj))
    # the DICOM SEG beside it holds the same mask, slice for slice in the series' position order
    seg = read_seg(tmp_path / "from_dicom" / "scan_3.seg.dcm", series)
    np.testing.assert_array_equal(seg, read_volume(tmp_path / "from_dicom" / "scan_3.nii.gz")[0] > 0)
    assert "scan_3.seg.dcm" in (tmp_path / "from_dicom" / "predict_outputs.txt").read_text().split()
    # scored in mm against the label volume beside the series (the SEG beside the NIfTI is not taken for a case)
    assert main(["evaluate", str(tmp_path / "from_dicom"), str(raw), "--out", str(tmp_path / "metrics.csv")]) == 0
    assert pd.read_csv(tmp_path / "metrics.csv").case.tolist() == ["scan_3"]
    assert main(["predict", str(run), str(converted), "--format", "dicom-seg", "--out", str(tmp_path / "refused")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.endswith("scan_3.nii.gz is not a DICOM series folder; a DICOM SEG refers to the series it was "
                          "predicted from") and error.startswith("medprompt predict: error: --format dicom-seg: ")
    assert not (tmp_path / "refused").exists()
    assert sorted(p.suffix for p in series.iterdir()) == [".dcm"] * 6  # nothing written into the series folder
