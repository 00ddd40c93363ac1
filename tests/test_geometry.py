"""Slice geometry: forward resample + crop/pad and its inverse, for labels, probabilities and box coordinates."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from helpers import SHARED_DATA, dice
from medprompt.common.errors import MedpromptError
from medprompt.data.geometry import (
    SliceGeometry,
    forward_image,
    forward_labels,
    inverse_labels,
    inverse_probabilities,
    pixels_cropped_away,
    source_to_slice,
)


def blobs(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A label map with three nested/adjacent ellipses (values 1, 2, 3) near the centre."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    cy, cx = shape[0] // 2 + int(rng.integers(-5, 5)), shape[1] // 2 + int(rng.integers(-5, 5))
    cv2.ellipse(labels, (cx, cy), (shape[1] // 6, shape[0] // 5), 20, 0, 360, 2, -1)
    cv2.ellipse(labels, (cx, cy), (shape[1] // 9, shape[0] // 8), 20, 0, 360, 3, -1)
    cv2.ellipse(labels, (cx - shape[1] // 5, cy), (shape[1] // 12, shape[0] // 7), 0, 0, 360, 1, -1)
    return labels


def test_plan_resamples_to_target_spacing_and_centres():
    g = SliceGeometry.plan((216, 256), (1.5625, 1.5625), (1.0, 1.0), 256)
    assert (g.res_height, g.res_width) == (338, 400)
    assert (g.offset_y, g.offset_x) == ((256 - 338) // 2, (256 - 400) // 2)
    assert g.resampled and g.scale == (1 / 1.5625, 1 / 1.5625)
    kept = SliceGeometry.plan((540, 800), (0.1, 0.1), None, 640)
    assert not kept.resampled and (kept.offset_y, kept.offset_x) == (50, -80)
    unknown = SliceGeometry.plan((540, 800), (float("nan"), float("nan")), None, 640)
    assert not unknown.resampled and unknown.scale == (1.0, 1.0)


def test_manifest_columns_round_trip():
    g = SliceGeometry.plan((778, 549), (0.154, 0.308), (0.308, 0.308), 512)
    assert SliceGeometry.from_row(g.to_columns()) == g


def test_crop_and_pad_only_is_exact_both_ways():
    labels = blobs((540, 800), seed=1)
    g = SliceGeometry.plan(labels.shape, (0.1, 0.1), None, 640)
    out = forward_labels(labels, g)
    assert out.shape == (640, 640)
    np.testing.assert_array_equal(out[50:590, :], labels[:, 80:720])
    np.testing.assert_array_equal(inverse_labels(out, g), labels)


@pytest.mark.parametrize(
    "shape, spacing, target",
    [((216, 256), (1.5625, 1.5625), (1.0, 1.0)), ((232, 256), (1.37, 1.37), (1.0, 1.0)), ((778, 549), (0.154, 0.308), (0.308, 0.308))],
)
def test_label_round_trip_through_resampling(shape, spacing, target):
    labels = blobs(shape, seed=2)
    g = SliceGeometry.plan(labels.shape, spacing, target, 512)
    for interpolation in ("nearest", "linear"):
        back = inverse_labels(forward_labels(labels, g, interpolation), g, interpolation)
        assert back.shape == labels.shape
        for value in (1, 2, 3):
            assert dice(back == value, labels == value) >= 0.99, (interpolation, value)
    if spacing[0] > target[0]:
        exact = inverse_labels(forward_labels(labels, g, "nearest"), g, "nearest")
        np.testing.assert_array_equal(exact, labels)


def test_forward_resampling_keeps_physical_size():
    labels = blobs((200, 240), seed=3)
    g = SliceGeometry.plan(labels.shape, (1.5, 1.5), (1.0, 1.0), 512)
    out = forward_labels(labels, g)
    area_mm2 = [(labels == v).sum() * 1.5**2 for v in (1, 2, 3)]
    assert np.allclose([(out == v).sum() for v in (1, 2, 3)], area_mm2, rtol=0.02)


def test_probability_round_trip_is_linear_and_bounded():
    yy, xx = np.mgrid[:120, :160]
    smooth = (0.5 + 0.5 * np.sin(xx / 15.0) * np.cos(yy / 11.0)).astype(np.float32)
    g = SliceGeometry.plan(smooth.shape, (1.4, 1.4), (1.0, 1.0), 256)
    back = inverse_probabilities(forward_image(smooth, g, "linear"), g)
    assert back.dtype == np.float32 and back.shape == smooth.shape
    assert np.abs(back - smooth).max() < 0.02
    assert back.min() >= 0 and back.max() <= 1


def test_cropped_regions_come_back_empty_and_are_counted():
    labels = np.zeros((100, 300), dtype=np.uint8)
    labels[40:60, 0:10] = 1
    labels[40:60, 140:160] = 1
    g = SliceGeometry.plan(labels.shape, (1.0, 1.0), None, 128)
    assert pixels_cropped_away(labels, g) == 200
    back = inverse_labels(forward_labels(labels, g), g)
    assert back[40:60, 0:10].sum() == 0
    np.testing.assert_array_equal(back[40:60, 140:160], 1)


def test_source_to_slice_maps_pixel_edges_like_the_image():
    g = SliceGeometry.plan((216, 256), (1.5625, 1.5625), (1.0, 1.0), 256)
    labels = np.zeros((216, 256), dtype=np.uint8)
    labels[100:110, 120:140] = 1
    out = forward_labels(labels, g, "nearest")
    ys, xs = np.nonzero(out)
    (x0, x1), (y0, y1) = source_to_slice(np.array([120, 140]), np.array([100, 110]), g)
    assert abs(x0 - xs.min()) <= 1 and abs(x1 - (xs.max() + 1)) <= 1
    assert abs(y0 - ys.min()) <= 1 and abs(y1 - (ys.max() + 1)) <= 1


def test_bad_geometry_inputs_are_refused():
    with pytest.raises(MedpromptError, match="spacing"):
        SliceGeometry.plan((10, 10), (float("nan"), 1.0), (1.0, 1.0), 16)
    g = SliceGeometry.plan((10, 10), (1.0, 1.0), None, 16)
    with pytest.raises(MedpromptError, match="shape"):
        forward_image(np.zeros((11, 10)), g)
    with pytest.raises(MedpromptError, match="interpolation"):
        forward_labels(np.zeros((10, 10), np.uint8), g, "cubic")
    with pytest.raises(MedpromptError, match="geometry columns"):
        SliceGeometry.from_row({"src_height": 1})


@pytest.mark.skipif(not (SHARED_DATA / "ACDC").is_dir(), reason="real ACDC samples not available")
def test_real_acdc_slices_resampled_to_1mm_and_back():
    nib = pytest.importorskip("nibabel")
    worst = 1.0
    for path in sorted((SHARED_DATA / "ACDC").rglob("*_gt.nii.gz"))[:6]:
        image = nib.load(path)
        volume = np.asanyarray(image.dataobj).T
        zooms = image.header.get_zooms()
        g = SliceGeometry.plan(volume.shape[1:], (zooms[1], zooms[0]), (1.0, 1.0), 256)
        back = np.stack([inverse_labels(forward_labels(s, g), g) for s in volume])
        worst = min(worst, *(dice(back == v, volume == v) for v in (1, 2, 3)))
    assert worst >= 0.999
