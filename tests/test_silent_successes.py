"""Input that used to be taken without a word is now refused in one line (exit 2, nothing written), or, where
a user may legitimately have it, taken with a one-line warning.

Refused: NaN intensities, a blank or one-voxel scan, a NIfTI whose header spacing is zero or negative, an
image with no pixel spacing through a run that resamples to millimetres, HC18 pixel sizes that are not
positive, and counts below one (`--shots 0`, `--epochs 0`, `embed --batch-size -4`). Warned: a file of
another kind than the run was trained on, a scan too small to hold a structure, box rows given twice.
"""

import gzip
import struct

import cv2
import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from helpers import backbone_args, expect_error
from medprompt.cli.main import main
from preprocessing.phantoms import write_hc18


@pytest.mark.parametrize("argv, fragment", [
    (["embed", "DATA", "--batch-size", "-4"], "argument --batch-size: -4 is below the smallest allowed, 1"),
    (["train", "DATA", "--out", "RUN", "--shots", "0"], "argument --shots: 0 is below the smallest allowed, 1"),
    (["train", "DATA", "--out", "RUN", "--epochs", "0"], "argument --epochs: 0 is below the smallest allowed, 1"),
    (["train", "DATA", "--out", "RUN", "--set", "epochs=-1"], "config key epochs: -1 is not allowed"),
])
def test_counts_below_one_are_refused(embedded, tmp_path, capsys, argv, fragment):
    argv = [str(embedded) if a == "DATA" else str(tmp_path / "run") if a == "RUN" else a for a in argv]
    before = sorted(p.name for p in (embedded / "embeddings").iterdir())
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "run").exists() and sorted(p.name for p in (embedded / "embeddings").iterdir()) == before


def test_float_slices_with_nan_are_refused_before_encoding(dataset_copy, capsys):
    with h5py.File(dataset_copy / "slices.h5", "r+") as f:
        images = f["image"][:].astype(np.float32)
        images[0, 0, 0] = np.nan
        del f["image"]
        f["image"] = images
    expect_error(capsys, ["embed", str(dataset_copy)], "slices.h5: 'image' must be uint8 [N,H,W]", "float32")
    assert not (dataset_copy / "embeddings").exists()


def nifti_with_spacing(source, path, first_spacing: float):
    """A copy of the NIfTI `source` whose header's first pixel spacing (pixdim[1]) is `first_spacing`."""
    header = bytearray(gzip.open(source).read())
    header[80:84] = struct.pack("<f", first_spacing)
    path.write_bytes(bytes(header))
    return path


@pytest.mark.parametrize("make, fragment", [
    (lambda raw, tmp: nifti_with_spacing(raw, tmp / "scan.nii", 0.0), "pixel spacing 0 x "),
    (lambda raw, tmp: nifti_with_spacing(raw, tmp / "scan.nii", -1.5), "pixel spacing -1.5 x "),
    (lambda raw, tmp: nib.save(nib.Nifti1Image(np.zeros((40, 40, 3), np.float32), np.eye(4)), tmp / "scan.nii.gz"),
     "blank image (every pixel is 0.0)"),
    (lambda raw, tmp: nib.save(nib.Nifti1Image(np.ones((1, 1, 1), np.float32), np.eye(4)), tmp / "scan.nii.gz"),
     "blank image (every pixel is 1.0)"),
    (lambda raw, tmp: nib.save(nib.Nifti1Image(np.full((40, 40, 3), np.nan, np.float32), np.eye(4)), tmp / "scan.nii.gz"),
     "4800 NaN or infinite intensities"),
    (lambda raw, tmp: cv2.imwrite(str(tmp / "scan.png"), np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) % 251),
     "cannot resample to 1 x 1 mm: the source pixel spacing is unknown (a PNG has none)"),
])
def test_scans_that_cannot_be_segmented_in_millimetres_are_refused(acdc_run, tmp_path, capsys, make, fragment):
    inputs = tmp_path / "in"
    inputs.mkdir()
    make(next(acdc_run.raw.rglob("patient001_frame01.nii.gz")), inputs)
    scan = next(inputs.iterdir())
    expect_error(capsys, ["predict", str(acdc_run.run), str(scan), "--out", str(tmp_path / "out")], str(scan), fragment)
    assert not (tmp_path / "out").exists()


def test_another_kind_of_file_or_a_tiny_scan_is_predicted_with_a_one_line_warning(acdc_run, tmp_path, capsys):
    image = sitk.GetImageFromArray((np.random.default_rng(0).random((2, 20, 24)) * 200).astype(np.float32))
    image.SetSpacing((1.5, 1.5, 8.0))
    sitk.WriteImage(image, str(tmp_path / "tiny.mhd"))
    assert main(["predict", str(acdc_run.run), str(tmp_path / "tiny.mhd"), "--out", str(tmp_path / "out")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert len(warnings) == 2, warnings
    assert "a 3D .mhd file, but the run was trained on 3D .nii.gz files (acdc)" in warnings[0]
    assert "slices of 20x24 pixels; too small to hold a structure" in warnings[1]
    assert (tmp_path / "out" / "tiny.mhd").exists()


def test_box_rows_given_twice_count_once_with_a_warning(embedded, tiny_checkpoint, tmp_path, capsys):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("slice_id,x_min,y_min,x_max,y_max\ncase00_s00,10,10,30,30\ncase00_s00,10,10,30,30\n"
                     "case00_s01,12,12,40,40\n")
    assert main(["train", str(embedded), "--out", str(tmp_path / "run"), "--boxes", str(boxes), "--epochs", "1",
                 *backbone_args(tiny_checkpoint)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {boxes}: 1 row repeats a box given earlier for the same slice" in err
    assert err.count("repeats a box") == 1  # read twice (checked, then trained), said once
    assert len(pd.read_csv(tmp_path / "run" / "train_boxes.csv")) == 2


@pytest.mark.parametrize("pixel_size", ["0", "-0.1", "n/a"])
def test_hc18_pixel_sizes_that_are_not_positive_are_refused(tmp_path, capsys, pixel_size):
    raw = write_hc18(tmp_path / "raw", n_images=2, seed=0)
    csv = raw / "training_set_pixel_size_and_HC.csv"
    lines = csv.read_text().splitlines()
    name, _, circumference = lines[2].split(",")
    lines[2] = f"{name},{pixel_size},{circumference}"
    csv.write_text("\n".join(lines))
    expect_error(capsys, ["preprocess", "hc18", str(raw), str(tmp_path / "out")], str(csv),
                 f"pixel_size_mm of '{name}' is")
    assert not (tmp_path / "out").exists()
