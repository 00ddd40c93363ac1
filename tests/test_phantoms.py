"""Synthetic phantoms: determinism, label/dtype contracts, anatomy, and raw layouts that read back like the releases."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from helpers import SHARED_DATA, dice
from preprocessing import phantoms


def read_cfg(path: Path) -> dict[str, str]:
    """Parse a `key: value` Info.cfg into an ordered dict."""
    return dict(line.split(": ", 1) for line in path.read_text().splitlines())


def outline_contour(outline: np.ndarray) -> np.ndarray:
    """The outer contour of an HC18 annotation outline."""
    contours, _ = cv2.findContours((outline > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    assert len(contours) == 1, "the outline must be one closed curve"
    return contours[0]


def fitted_circumference(outline: np.ndarray, pixel_size: float) -> float:
    """Head circumference (mm) of the ellipse fitted to an annotation's outer contour, as a pipeline would measure it."""
    _, (width, height), _ = cv2.fitEllipse(outline_contour(outline))
    return phantoms.ramanujan_perimeter(width / 2, height / 2) * pixel_size


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under `root`, by relative path, with its content."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def acdc_cases() -> list[dict[str, phantoms.AcdcPhantom]]:
    """Four ACDC-like patients, one per seed."""
    return [phantoms.acdc_case(np.random.default_rng(seed)) for seed in range(4)]


@pytest.fixture(scope="module")
def camus_views() -> list[phantoms.CamusPhantom]:
    """Both views at both phases of two CAMUS-like patients."""
    return [view for seed in range(2) for view in phantoms.camus_patient(np.random.default_rng(seed)).values()]


@pytest.fixture(scope="module")
def hc18_images() -> list[phantoms.Hc18Phantom]:
    """Five HC18-like images."""
    return [phantoms.hc18_image(np.random.default_rng(seed)) for seed in range(5)]


# ---------------------------------------------------------------- determinism


def test_generators_are_deterministic_and_seed_dependent():
    one = phantoms.acdc_case(np.random.default_rng(7))
    two = phantoms.acdc_case(np.random.default_rng(7))
    for phase in ("ED", "ES"):
        np.testing.assert_array_equal(one[phase].image, two[phase].image)
        np.testing.assert_array_equal(one[phase].label, two[phase].label)
        assert one[phase].spacing == two[phase].spacing
    other = phantoms.acdc_case(np.random.default_rng(8))
    assert one["ED"].image.shape != other["ED"].image.shape or not np.array_equal(one["ED"].image, other["ED"].image)

    cam = [phantoms.camus_view(np.random.default_rng(3), view="4CH") for _ in range(2)]
    np.testing.assert_array_equal(cam[0].image, cam[1].image)
    np.testing.assert_array_equal(cam[0].label, cam[1].label)

    hc = [phantoms.hc18_image(np.random.default_rng(3)) for _ in range(2)]
    np.testing.assert_array_equal(hc[0].image, hc[1].image)
    np.testing.assert_array_equal(hc[0].outline, hc[1].outline)
    assert hc[0].circumference_mm == hc[1].circumference_mm
    assert not np.array_equal(hc[0].image, phantoms.hc18_image(np.random.default_rng(4)).image)


# ------------------------------------------------------------------------ ACDC


def test_acdc_dtypes_shapes_spacing_and_labels(acdc_cases):
    for case in acdc_cases:
        ed, es = case["ED"], case["ES"]
        assert ed.image.shape == es.image.shape == ed.label.shape == es.label.shape
        assert ed.spacing == es.spacing
        assert ed.image.dtype == es.image.dtype and ed.image.dtype in (np.int16, np.float32)
        nx, ny, nz = ed.image.shape
        assert 180 <= nx <= 260 and 200 <= ny <= 260 and 6 <= nz <= 12
        sx, sy, sz = ed.spacing
        assert sx == sy and 1.2 <= sx <= 1.9 and 5.0 <= sz <= 10.0
        assert ed.image.min() >= 0 and 300 < ed.image.max() < 2000
        for frame in (ed, es):
            assert frame.label.dtype == np.uint8
            assert set(np.unique(frame.label)) == {0, 1, 2, 3}
        assert (es.label == 3).sum() < 0.8 * (ed.label == 3).sum(), "ES must be contracted"
        assert (es.label == 1).sum() < (ed.label == 1).sum()


def test_acdc_both_dtypes_and_varying_spacing_occur():
    volumes = [phantoms.acdc_volume(np.random.default_rng(seed)) for seed in range(8)]
    assert {v.image.dtype for v in volumes} == {np.dtype(np.int16), np.dtype(np.float32)}
    assert len({v.spacing[0] for v in volumes}) > 4


def test_acdc_anatomy(acdc_cases):
    for case in acdc_cases:
        for frame in case.values():
            label = np.pad(frame.label, ((1, 1), (1, 1), (0, 0)))
            lv = label == 3
            for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
                neighbour = np.roll(label, shift, axis=axis)
                assert np.isin(neighbour[lv], (2, 3)).all(), "LV must be enclosed by myocardium"
            heart = [z for z in range(label.shape[2]) if (label[:, :, z] > 0).any()]
            assert heart[0] == 0, "the basal slice is the first one"
            assert (label[:, :, heart[0]] == 1).sum() > 50, "RV present at the base"
            assert not (label[:, :, heart[-1]] == 1).any(), "RV absent at the apex"
            lv_area = [(label[:, :, z] == 3).sum() for z in heart]
            assert lv_area[0] > 3 * lv_area[-1], "LV shrinks towards the apex"


def test_acdc_structures_are_distinguishable(acdc_cases):
    for case in acdc_cases:
        frame = case["ED"]
        image, label = frame.image.astype(np.float64), frame.label
        blood, myo, rv = image[label == 3].mean(), image[label == 2].mean(), image[label == 1].mean()
        around = ndimage.binary_dilation(label >= 2, np.ones((5, 5, 1), bool)) & (label == 0)
        assert blood > 1.8 * myo and rv > 1.8 * myo
        assert np.abs(image[around] - myo).mean() > 0.12 * blood, "myocardium must differ from what lies outside it"
        assert image[label == 3].std() > 0.02 * blood, "no pure constants"


# ----------------------------------------------------------------------- CAMUS


def test_camus_contract_and_anatomy(camus_views):
    for view in camus_views:
        rows, cols = view.image.shape
        assert view.image.dtype == np.uint8 and view.label.dtype == np.uint8
        assert view.label.shape == (rows, cols) and 600 <= rows <= 1000 and 0.6 * rows <= cols <= 0.75 * rows
        sx, sy = view.spacing
        assert sx != sy and 0.14 <= sy <= 0.31 and 0.14 <= sx <= 0.32
        assert set(np.unique(view.label)) == {0, 1, 2, 3}
        assert view.image[0, 0] == 0 and view.image[0, -1] == 0, "outside the fan is black"
        assert view.image[rows // 2, cols // 2] > 0
        lv, myo, la = view.label == 1, view.label == 2, view.label == 3
        boundary = lv & ~ndimage.binary_erosion(lv)
        assert (boundary & ndimage.binary_dilation(myo)).sum() > 0.7 * boundary.sum(), "myocardium surrounds the LV"
        lv_rows, la_rows = np.nonzero(lv)[0], np.nonzero(la)[0]
        assert la_rows.mean() > lv_rows.max() - 5 and lv_rows.min() < la_rows.min(), "apex at the top, LA below the LV"
        image = view.image.astype(np.float64)
        assert image[lv].mean() + 40 < image[myo].mean(), "dark cavity, bright wall"
        assert image[la].mean() + 20 < image[myo].mean()
        assert image[myo].std() > 10, "speckle"


def test_camus_patient_views_share_geometry(camus_views):
    first = camus_views[:4]
    assert len({v.image.shape for v in first}) == 1 and len({v.spacing for v in first}) == 1
    ed, es = first[0], first[1]
    assert (es.label == 1).sum() < 0.85 * (ed.label == 1).sum()


def test_camus_view_rejects_unknown_view():
    with pytest.raises(ValueError):
        phantoms.camus_view(np.random.default_rng(0), view="3CH")


# ------------------------------------------------------------------------ HC18


def test_hc18_contract(hc18_images):
    for case in hc18_images:
        for array in (case.image, case.outline, case.mask):
            assert array.shape == (540, 800) and array.dtype == np.uint8
        assert set(np.unique(case.outline)) == {0, 255}
        assert set(np.unique(case.mask)) == {0, 1}
        assert 0.05 <= case.pixel_size <= 0.3
        assert math.isclose(case.circumference_mm, phantoms.ramanujan_perimeter(*case.axes) * case.pixel_size)
        line_width = case.outline.sum() / 255 / phantoms.ramanujan_perimeter(*case.axes)
        assert 1.5 < line_width < 3.5, "a thin outline like the real annotations"


def test_hc18_outline_recovers_mask_and_circumference(hc18_images):
    for case in hc18_images:
        filled = np.zeros_like(case.outline)
        cv2.fillPoly(filled, [outline_contour(case.outline)], 1)
        assert dice(filled, case.mask) > 0.98
        a, b = case.axes
        assert abs(case.mask.sum() - math.pi * a * b) < 0.05 * math.pi * a * b
        fitted = fitted_circumference(case.outline, case.pixel_size)
        assert abs(fitted - case.circumference_mm) < 0.03 * case.circumference_mm


def test_hc18_skull_is_brighter_than_brain(hc18_images):
    for case in hc18_images:
        image = case.image.astype(np.float64)
        brain = ndimage.binary_erosion(case.mask, iterations=15)
        ring = case.mask.astype(bool) & ~ndimage.binary_erosion(case.mask, iterations=6)
        assert image[ring].mean() > image[brain].mean() + 20


# --------------------------------------------------------------------- writers


def test_write_acdc_layout(tmp_path):
    root = phantoms.write_acdc(tmp_path / "ACDC", n_patients=2, seed=3)
    assert root == tmp_path / "ACDC"
    folders = sorted((root / "training").iterdir())
    assert [f.name for f in folders] == ["patient001", "patient002"]
    for folder in folders:
        info = read_cfg(folder / "Info.cfg")
        assert list(info) == ["ED", "ES", "Group", "Height", "NbFrame", "Weight"]
        assert info["Group"] in phantoms.ACDC_GROUPS
        assert 1 <= int(info["ED"]) < int(info["ES"]) <= int(info["NbFrame"])
        float(info["Height"]), float(info["Weight"])
        names = {f"{folder.name}_frame{int(info[k]):02d}{s}.nii.gz" for k in ("ED", "ES") for s in ("", "_gt")}
        assert {p.name for p in folder.glob("*.nii.gz")} == names
        for phase in ("ED", "ES"):
            stem = folder / f"{folder.name}_frame{int(info[phase]):02d}"
            image = nib.load(f"{stem}.nii.gz")
            gt = nib.load(f"{stem}_gt.nii.gz")
            assert image.shape == gt.shape and image.get_data_dtype() in (np.int16, np.float32)
            assert gt.get_data_dtype() == np.uint8
            assert set(np.unique(np.asanyarray(gt.dataobj))) <= {0, 1, 2, 3}
            for volume in (image, gt):
                zooms = volume.header.get_zooms()
                assert 1.2 <= zooms[0] == zooms[1] <= 1.9 and 5.0 <= zooms[2] <= 10.0
                np.testing.assert_array_equal(volume.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))
                assert int(volume.header["sform_code"]) == 2 and int(volume.header["qform_code"]) == 0
            read = sitk.ReadImage(f"{stem}.nii.gz")
            np.testing.assert_allclose(read.GetSpacing(), image.header.get_zooms(), rtol=1e-6)
    again = phantoms.write_acdc(tmp_path / "again", n_patients=2, seed=3)
    assert tree_bytes(root) == tree_bytes(again)


def test_write_camus_layout(tmp_path):
    root = phantoms.write_camus(tmp_path / "CAMUS", n_patients=1, seed=2)
    folder = root / "training" / "patient0001"
    expected = {f"patient0001_{v}_{p}{s}.{e}" for v in ("2CH", "4CH") for p in ("ED", "ES") for s in ("", "_gt")
                for e in ("mhd", "raw")} | {"Info_2CH.cfg", "Info_4CH.cfg"}
    assert {p.name for p in folder.iterdir()} == expected
    header = (folder / "patient0001_2CH_ED.mhd").read_text()
    assert "ElementType = MET_UCHAR" in header and "ElementDataFile = patient0001_2CH_ED.raw" in header
    sizes = set()
    for name in sorted(expected):
        if not name.endswith(".mhd"):
            continue
        image = sitk.ReadImage(str(folder / name))
        array = sitk.GetArrayFromImage(image)
        sx, sy, sz = image.GetSpacing()
        assert array.ndim == 3 and array.shape[0] == 1 and array.dtype == np.uint8
        assert image.GetSize() == (array.shape[2], array.shape[1], 1)
        assert sx != sy and math.isclose(sz, 10 * sy, rel_tol=1e-6)
        assert image.GetOrigin() == (0.0, 0.0, 0.0)
        if name.endswith("_gt.mhd"):
            assert set(np.unique(array)) == {0, 1, 2, 3}
        sizes.add((image.GetSize(), image.GetSpacing()))
    assert len(sizes) == 1, "all views of a patient share size and spacing"
    infos = [read_cfg(folder / f"Info_{v}.cfg") for v in ("2CH", "4CH")]
    for info in infos:
        assert list(info) == ["ED", "ES", "NbFrame", "Sex", "Age", "ImageQuality", "LVedv", "LVesv", "LVef"]
        edv, esv, ef = float(info["LVedv"]), float(info["LVesv"]), float(info["LVef"])
        assert 0 < esv < edv and abs(100 * (edv - esv) / edv - ef) < 0.2
    assert infos[0]["LVedv"] == infos[1]["LVedv"] and infos[0]["Sex"] in ("F", "M")
    rendered = phantoms.camus_patient(np.random.default_rng([2, 1]))["2CH_ED"]
    assert infos[0]["ImageQuality"] == rendered.quality in phantoms.CAMUS_QUALITIES
    again = phantoms.write_camus(tmp_path / "again", n_patients=1, seed=2)
    assert tree_bytes(root) == tree_bytes(again)


def test_write_hc18_layout(tmp_path):
    root = phantoms.write_hc18(tmp_path / "HC18", n_images=5, seed=1)
    raw = (root / "training_set_pixel_size_and_HC.csv").read_bytes()
    lines = raw.split(b"\r\n")
    assert lines[0] == phantoms.HC18_CSV_HEADER.encode() and b"\n" not in raw.replace(b"\r\n", b"")
    assert not raw.endswith(b"\r\n") and len(lines) == 6
    table = pd.read_csv(root / "training_set_pixel_size_and_HC.csv")
    assert list(table["filename"]) == sorted(table["filename"])
    for row in table.itertuples(index=False):
        filename, pixel_size, hc = row
        image = cv2.imread(str(root / "training_set" / filename), cv2.IMREAD_UNCHANGED)
        outline = cv2.imread(str(root / "training_set" / filename.replace(".png", "_Annotation.png")), cv2.IMREAD_UNCHANGED)
        assert image.shape == outline.shape == (540, 800) and image.dtype == outline.dtype == np.uint8
        assert set(np.unique(outline)) == {0, 255}
        assert abs(fitted_circumference(outline, pixel_size) - hc) < 0.03 * hc
    again = phantoms.write_hc18(tmp_path / "again", n_images=5, seed=1)
    assert tree_bytes(root) == tree_bytes(again)


# --------------------------------------------------------- against real samples


@pytest.mark.skipif(not (SHARED_DATA / "ACDC").is_dir(), reason="real ACDC sample absent")
def test_acdc_header_matches_real_sample(tmp_path):
    real_folder = sorted((SHARED_DATA / "ACDC" / "training").iterdir())[0]
    real_info = read_cfg(real_folder / "Info.cfg")
    real = nib.load(next(real_folder.glob("*_frame01.nii.gz")))
    root = phantoms.write_acdc(tmp_path / "ACDC", n_patients=1, seed=0)
    folder = root / "training" / "patient001"
    assert list(read_cfg(folder / "Info.cfg")) == list(real_info)
    mine = nib.load(folder / "patient001_frame01.nii.gz")
    np.testing.assert_array_equal(mine.affine, real.affine)
    for key in ("sform_code", "qform_code", "xyzt_units", "quatern_b", "quatern_c", "quatern_d"):
        assert mine.header[key] == real.header[key], key


@pytest.mark.skipif(not (SHARED_DATA / "CAMUS").is_dir(), reason="real CAMUS sample absent")
def test_camus_layout_matches_real_sample(tmp_path):
    real_folder = sorted((SHARED_DATA / "CAMUS" / "training").iterdir())[0]
    root = phantoms.write_camus(tmp_path / "CAMUS", n_patients=1, seed=0)
    folder = root / "training" / "patient0001"
    assert list(read_cfg(folder / "Info_2CH.cfg")) == list(read_cfg(real_folder / "Info_2CH.cfg"))
    real = sitk.ReadImage(str(next(real_folder.glob("*_2CH_ED.mhd"))))
    mine = sitk.ReadImage(str(folder / "patient0001_2CH_ED.mhd"))
    assert mine.GetDirection() == real.GetDirection() and mine.GetOrigin() == real.GetOrigin()
    assert mine.GetPixelID() == real.GetPixelID() and mine.GetDimension() == real.GetDimension()
    (rsx, rsy, rsz), (msx, msy, msz) = real.GetSpacing(), mine.GetSpacing()
    assert math.isclose(rsz / rsy, msz / msy, rel_tol=1e-6) and (rsx > rsy) == (msx > msy)


@pytest.mark.skipif(not (SHARED_DATA / "HC18").is_dir(), reason="real HC18 sample absent")
def test_hc18_csv_header_matches_real_sample(tmp_path):
    real = (SHARED_DATA / "HC18" / "training_set_pixel_size_and_HC.csv").read_bytes()
    root = phantoms.write_hc18(tmp_path / "HC18", n_images=2, seed=0)
    mine = (root / "training_set_pixel_size_and_HC.csv").read_bytes()
    assert mine.split(b"\r\n")[0] == real.split(b"\r\n")[0]
    assert mine.endswith(b"\r\n") == real.endswith(b"\r\n")
