"""Volume metrics with known answers (spheres in anisotropic voxels, ellipse perimeters) and case matching."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from medprompt.common.errors import MedpromptError
from medprompt.evaluation.evaluate import evaluate_volumes, format_volume_summary
from medprompt.evaluation.metrics import structure_scores
from preprocessing.head_circumference import ellipse_perimeter, head_circumference_mm
from preprocessing.pipeline import GROUND_TRUTH_LAYOUTS

ZOOMS = (0.5, 0.5, 2.0)  # NIfTI (x, y, z): thick slices along z


def sphere(shape: tuple[int, int, int], zooms: tuple[float, ...], centre_mm, radius_mm: float) -> np.ndarray:
    """A ball on a NIfTI-ordered (x, y, z) grid of the given voxel size."""
    axes = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, zooms)), indexing="ij")
    return sum((a - c) ** 2 for a, c in zip(axes, centre_mm)) <= radius_mm**2


def save(array: np.ndarray, path: Path, zooms=ZOOMS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(array.astype(np.uint8), np.diag([*zooms, 1.0]))
    nib.save(image, path)


def brute_force(a: np.ndarray, b: np.ndarray, spacing) -> tuple[float, float]:
    """HD95 and ASSD by nearest neighbours between boundary voxel centres in mm (reference implementation)."""
    pa = np.argwhere(a & ~ndimage.binary_erosion(a)) * np.asarray(spacing)
    pb = np.argwhere(b & ~ndimage.binary_erosion(b)) * np.asarray(spacing)
    ab, ba = cKDTree(pb).query(pa)[0], cKDTree(pa).query(pb)[0]
    return max(np.percentile(ab, 95), np.percentile(ba, 95)), float(np.concatenate([ab, ba]).mean())


def test_two_spheres_at_known_distance_in_anisotropic_voxels(tmp_path):
    shape, radius, distance = (100, 100, 40), 10.0, 30.0
    gt = sphere(shape, ZOOMS, (25, 25, 25), radius)
    pred = sphere(shape, ZOOMS, (25, 25, 25 + distance), radius)
    save(gt * 3, tmp_path / "gt" / "case01.nii.gz")
    save(pred * 3, tmp_path / "pred" / "case01.nii.gz")
    cases, slices = evaluate_volumes(tmp_path / "pred", tmp_path / "gt", labels={3: "LV"})
    row = cases.iloc[0]
    # Continuous surfaces: distances sqrt(R^2 + D^2 - 2RD cos t) - R over the sphere, t uniform in cos.
    hd95 = math.sqrt(radius**2 + distance**2 + 1.8 * radius * distance) - radius
    assd = distance - radius + radius**2 / (3 * distance)
    assert row.dice == 0 and row.units == "mm"
    assert abs(row.hd95_mm - hd95) <= max(ZOOMS)
    assert abs(row.assd_mm - assd) <= 0.05 * assd
    np.testing.assert_allclose((row.hd95_mm, row.assd_mm), brute_force(pred.T, gt.T, ZOOMS[::-1]), rtol=1e-4)
    isotropic = structure_scores(pred, gt, (1.0, 1.0, 1.0))
    assert abs(isotropic["hd95_mm"] - hd95) > 5
    assert slices.has_target.sum() == gt.any(axis=(0, 1)).sum()


def test_overlapping_spheres_and_empty_structures(tmp_path):
    shape = (60, 60, 20)
    gt = sphere(shape, ZOOMS, (15, 15, 20), 8.0).astype(np.uint8)
    pred = sphere(shape, ZOOMS, (16, 15, 20), 8.0).astype(np.uint8)
    gt[0, 0, 0] = 2
    save(gt, tmp_path / "gt" / "a.nii.gz")
    save(pred, tmp_path / "pred" / "a.nii.gz")
    cases, _ = evaluate_volumes(tmp_path / "pred", tmp_path / "gt", labels={1: "one", 2: "two", 4: "four"})
    one, two, four = (cases[cases.structure == s].iloc[0] for s in ("one", "two", "four"))
    expected = 2 * np.logical_and(gt == 1, pred == 1).sum() / ((gt == 1).sum() + (pred == 1).sum())
    assert one.dice == pytest.approx(expected) and one.hd95_mm == pytest.approx(1.0)
    assert two.dice == 0 and math.isnan(two.hd95_mm)
    assert four.dice == 1 and math.isnan(four.assd_mm)
    assert "one: 1 cases, Dice" in format_volume_summary(cases)


def test_ellipse_of_known_perimeter():
    assert ellipse_perimeter(5.0, 5.0) == pytest.approx(2 * math.pi * 5.0)
    assert ellipse_perimeter(10.0, 1e-9) == pytest.approx(40.0, rel=5e-4)
    assert ellipse_perimeter(3.0, 2.0) == pytest.approx(15.865439589, rel=1e-9)
    yy, xx = np.mgrid[:540, :800]
    angle = math.radians(25)
    u = (xx - 400.3) * math.cos(angle) + (yy - 270.6) * math.sin(angle)
    v = -(xx - 400.3) * math.sin(angle) + (yy - 270.6) * math.cos(angle)
    mask = (u / 180.0) ** 2 + (v / 120.0) ** 2 <= 1
    assert head_circumference_mm(mask, 0.1) == pytest.approx(ellipse_perimeter(180.0, 120.0) * 0.1, rel=2e-3)
    assert math.isnan(head_circumference_mm(np.zeros((5, 5)), 0.1))


def test_hc18_png_scores_use_the_csv_pixel_size(tmp_path):
    gt_dir, pred_dir = tmp_path / "training_set", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    outline = np.zeros((540, 800), np.uint8)
    cv2.ellipse(outline, (400, 270), (150, 100), 10, 0, 360, 255, 2)
    cv2.imwrite(str(gt_dir / "007_HC_Annotation.png"), outline)
    cv2.imwrite(str(gt_dir / "007_HC.png"), np.full((540, 800), 90, np.uint8))
    filled = np.zeros_like(outline)
    cv2.ellipse(filled, (400, 270), (150, 100), 10, 0, 360, 255, -1)
    cv2.imwrite(str(pred_dir / "007_HC.png"), filled)
    reference = ellipse_perimeter(150, 100) * 0.2
    (tmp_path / "training_set_pixel_size_and_HC.csv").write_bytes(
        f"filename,pixel size(mm),head circumference (mm)\r\n007_HC.png,0.2,{reference:.2f}".encode()
    )
    cases, _ = evaluate_volumes(pred_dir, gt_dir, layouts=GROUND_TRUTH_LAYOUTS)
    row = cases.iloc[0]
    assert row.structure == "head" and row.units == "mm" and row.dice > 0.98
    assert row.hd95_mm <= 2 * 0.2 * 1.5
    assert row.hc_error_mm < 0.01 * reference
    assert "HC error" in format_volume_summary(cases)


def write_acdc_truth(root: Path) -> None:
    folder = root / "training" / "patient001"
    folder.mkdir(parents=True)
    (folder / "Info.cfg").write_text("ED: 1\nES: 12\n")
    for frame in (1, 12):
        label = np.zeros((30, 30, 4), np.uint8)
        label[5:20, 5:20, :] = 3 if frame == 1 else 1
        save(label, folder / f"patient001_frame{frame:02d}_gt.nii.gz")
        save(label * 0 + 50, folder / f"patient001_frame{frame:02d}.nii.gz")


def test_raw_acdc_ground_truth_matches_ed_es_names(tmp_path):
    write_acdc_truth(tmp_path / "ACDC")
    pred = np.zeros((30, 30, 4), np.uint8)
    pred[5:20, 5:20, :] = 3
    save(pred, tmp_path / "pred" / "patient001_ED.nii.gz")
    save(pred, tmp_path / "pred" / "patient001_ES.nii.gz")
    save(pred, tmp_path / "pred" / "patient009_ED.nii.gz")
    cases, _ = evaluate_volumes(tmp_path / "pred", tmp_path / "ACDC", layouts=GROUND_TRUTH_LAYOUTS)
    assert cases.set_index("case").dice.to_dict() == {"patient001_ED": 1.0, "patient001_ES": 0.0}
    assert set(cases.structure) == {"LV"}
    assert cases.attrs["unmatched_predictions"] == ["patient009_ED"]


def test_nothing_matching_or_mismatched_shapes_are_clear_errors(tmp_path):
    write_acdc_truth(tmp_path / "ACDC")
    save(np.zeros((30, 30, 4)), tmp_path / "pred" / "other.nii.gz")
    with pytest.raises(MedpromptError, match="no predicted file matches"):
        evaluate_volumes(tmp_path / "pred", tmp_path / "ACDC", layouts=GROUND_TRUTH_LAYOUTS)
    save(np.zeros((30, 31, 4)), tmp_path / "pred" / "patient001_ED.nii.gz")
    with pytest.raises(MedpromptError, match=r"patient001_ED.nii.gz: shape .* differs from ground truth"):
        evaluate_volumes(tmp_path / "pred", tmp_path / "ACDC", layouts=GROUND_TRUTH_LAYOUTS)
    with pytest.raises(MedpromptError, match="ground-truth folder not found"):
        evaluate_volumes(tmp_path / "pred", tmp_path / "nowhere")
