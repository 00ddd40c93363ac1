"""HC18 pipeline: outline annotations filled into masks, PNGs back at their size, unannotated test images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers import SHARED_DATA
from medprompt.common.config import load_config
from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import PreprocessedDataset
from medprompt.inference.reconstruct import reconstruct_dataset
from preprocessing.hc18 import fill_outline
from preprocessing.head_circumference import read_hc_table
from preprocessing.phantoms import hc18_image, write_hc18
from preprocessing.pipeline import format_summary, preprocess, preprocess_input


@pytest.fixture(scope="module")
def phantom_raw(tmp_path_factory) -> Path:
    return write_hc18(tmp_path_factory.mktemp("hc18_raw"), n_images=8, seed=3)


def test_outline_fill_gives_the_drawn_ellipse():
    case = hc18_image(np.random.default_rng(5))
    np.testing.assert_array_equal(fill_outline(case.outline, Path("x.png")), case.mask)


def test_open_or_empty_outline_cannot_be_filled():
    case = hc18_image(np.random.default_rng(6))
    broken = case.outline.copy()
    ys, xs = np.nonzero(broken)
    broken[:, xs.min() : (xs.min() + xs.max()) // 2] = 0
    with pytest.raises(MedpromptError, match="broken_Annotation.png: the head outline is not a closed curve"):
        fill_outline(broken, Path("broken_Annotation.png"))
    with pytest.raises(MedpromptError, match="empty annotation"):
        fill_outline(np.zeros_like(broken), Path("e.png"))


def test_phantom_pipeline_round_trip(phantom_raw, tmp_path):
    summary = preprocess("hc18", phantom_raw, tmp_path / "data", load_config("hc18"))
    ds = PreprocessedDataset(tmp_path / "data")
    m = ds.manifest
    assert ds.shape[1:] == (640, 640) and summary["cases"] == 8 and not summary["skipped"]
    assert (m.groupby(m.case.str[:3]).split.nunique() == 1).all()
    assert (m.src_spacing_y > 0.05).all()
    written = reconstruct_dataset(tmp_path / "data", str(tmp_path / "data" / "slices.h5"), tmp_path / "rec")
    for path, row in zip(written, m.itertuples()):
        rebuilt = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        truth = fill_outline(cv2.imread(row.source_label, cv2.IMREAD_GRAYSCALE), Path(row.source_label))
        assert rebuilt.shape == (540, 800) and rebuilt.dtype == np.uint8 and set(np.unique(rebuilt)) <= {0, 255}
        lost = summary["target_cropped"].get(row.case, 0)
        assert int((truth.astype(bool) & ~rebuilt.astype(bool)).sum()) == lost
        assert int((rebuilt.astype(bool) & ~truth.astype(bool)).sum()) == 0


def test_unbuildable_mask_is_excluded_and_reported(phantom_raw, tmp_path):
    raw = tmp_path / "raw"
    (raw / "training_set").mkdir(parents=True)
    for src in sorted((phantom_raw / "training_set").glob("00[01]_HC*.png")):
        (raw / "training_set" / src.name).write_bytes(src.read_bytes())
    bad = raw / "training_set" / "001_HC_Annotation.png"
    outline = cv2.imread(str(bad), cv2.IMREAD_GRAYSCALE)
    outline[: outline.shape[0] // 2 + 30] = 0
    cv2.imwrite(str(bad), outline)
    summary = preprocess("hc18", raw, tmp_path / "data", load_config("hc18"))
    assert summary["cases"] == 1
    assert summary["skipped"] == [f"{bad}: the head outline is not a closed curve; cannot fill the ellipse"]
    assert str(bad) in format_summary(summary)


def test_unannotated_test_image_is_predictable(phantom_raw, tmp_path):
    raw = tmp_path / "raw"
    (raw / "training_set").mkdir(parents=True)
    for src in sorted((phantom_raw / "training_set").glob("00[01]_HC*.png")):
        (raw / "training_set" / src.name).write_bytes(src.read_bytes())
    (raw / "test_set").mkdir()
    cv2.imwrite(str(raw / "test_set" / "500_HC.png"), hc18_image(np.random.default_rng(9)).image)
    (raw / "test_set_pixel_size.csv").write_bytes(b"filename,pixel size(mm)\r\n500_HC.png,0.125\r\n")
    summary = preprocess("hc18", raw, tmp_path / "data", load_config("hc18"))
    assert summary["cases"] == 2 and summary["unannotated_images"] == 1
    assert "1 images without annotation" in format_summary(summary)
    manifest, images = preprocess_input(raw / "test_set" / "500_HC.png", load_config("hc18"))
    assert images.shape == (1, 640, 640) and images[0, :50].max() == 0
    assert manifest.src_spacing_x.iloc[0] == 0.125 and manifest.split.iloc[0] == "test"
    assert not manifest.has_target.iloc[0] and manifest.source_label.iloc[0] == ""


@pytest.mark.skipif(not (SHARED_DATA / "HC18").is_dir(), reason="real HC18 samples not available")
def test_real_hc18_round_trip_is_exact(tmp_path):
    summary = preprocess("hc18", SHARED_DATA / "HC18", tmp_path / "data", load_config("hc18"))
    assert summary["cases"] == 30 and not summary["skipped"] and not summary["target_cropped"]
    written = reconstruct_dataset(tmp_path / "data", str(tmp_path / "data" / "slices.h5"), tmp_path / "rec")
    for path in written:
        annotation = SHARED_DATA / "HC18" / "training_set" / path.name.replace(".png", "_Annotation.png")
        truth = fill_outline(cv2.imread(str(annotation), cv2.IMREAD_GRAYSCALE), annotation)
        np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), truth * 255)


@pytest.mark.parametrize("value", ["abc", "0", "-0.1", ""])
def test_pixel_sizes_that_are_not_positive_numbers_are_named(tmp_path, value):
    csv = tmp_path / "training_set_pixel_size_and_HC.csv"
    csv.write_text(f"filename,pixel size(mm),head circumference (mm)\n000_HC.png,0.07,44.3\n001_HC.png,{value},56.8\n")
    with pytest.raises(MedpromptError, match="pixel_size_mm of '001_HC.png' is .*, not a positive number"):
        read_hc_table(csv)
