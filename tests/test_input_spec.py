"""Input specifications: resize policies, box scaling, logit crops, on hand-built non-square cases."""

import cv2
import numpy as np
import pytest
import torch

from medprompt.backbones import InputSpec

LITE = InputSpec(size=256, resize="longest_side")
MEDSAM = InputSpec(size=1024, resize="stretch")


def test_longest_side_shapes_of_a_non_square_slice():
    assert LITE.content_shape((300, 200)) == (256, 171)  # 200 * 256/300 = 170.67, rounded as LiteMedSAM does
    assert LITE.low_res_shape((300, 200)) == (256, 171)
    assert MEDSAM.content_shape((300, 200)) == (1024, 1024)
    assert MEDSAM.low_res_shape((300, 200)) == (256, 256)


def test_longest_side_preprocess_pads_bottom_right_with_zeros():
    image = torch.arange(300 * 200, dtype=torch.float32).reshape(1, 300, 200)
    x = LITE.preprocess(image)
    assert x.shape == (1, 3, 256, 256) and torch.equal(x[:, 0], x[:, 2])
    assert (x[..., 171:] == 0).all()  # right padding
    assert x[..., :171].min() == 0 and x[..., :171].max() == pytest.approx(1.0)
    wide = LITE.preprocess(torch.rand(1, 100, 400) * 50 + 10)
    assert (wide[..., 64:, :] == 0).all() and wide[..., :64, :].max() == pytest.approx(1.0)


def test_longest_side_preprocess_matches_the_reference_area_resize():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 256, (512, 512)).astype(np.uint8), (5, 5), 0)
    reference = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA).astype(np.float64)
    reference = (reference - reference.min()) / (reference.max() - reference.min())
    ours = LITE.preprocess(torch.from_numpy(image)[None])[0, 0].numpy()
    assert np.abs(ours - reference).max() < 0.02


def test_images_for_networks_are_the_input_frame_at_the_low_res_logits_resolution():
    image = torch.rand(2, 300, 200) * 80
    lite = LITE.low_res_images(image)
    assert lite.shape == (2, 1, 256, 256) and torch.equal(lite, LITE.preprocess(image)[:, :1])
    medsam = MEDSAM.low_res_images(image)  # 1024 input frame, 256 logits: area-averaged 4x4 blocks
    full = MEDSAM.preprocess(image)[:, :1]
    assert medsam.shape == (2, 1, 256, 256)
    assert torch.allclose(medsam[0, 0, 10, 20], full[0, 0, 40:44, 80:84].mean())


def test_blank_slice_stays_zero():
    for spec in (LITE, MEDSAM):
        assert (spec.preprocess(torch.full((1, 40, 60), 7.0)) == 0).all()


def test_boxes_scale_by_the_longest_side_or_per_axis():
    boxes = torch.tensor([[30.0, 60, 150, 240]])
    assert LITE.boxes_to_input(boxes, (300, 200))[0].tolist() == pytest.approx([25.6, 51.2, 128.0, 204.8])
    assert MEDSAM.boxes_to_input(boxes, (300, 200))[0].tolist() == pytest.approx([153.6, 204.8, 768.0, 819.2])


@pytest.mark.parametrize("spec", [LITE, MEDSAM])
@pytest.mark.parametrize("image_size", [(300, 200), (120, 360), (256, 256)])
def test_box_drawn_on_low_res_logits_comes_back_on_the_slice_box(spec, image_size):
    """Logits that are positive exactly on a box's low-res image return, after crop and upsampling, on the box."""
    h, w = image_size
    box = np.array([[w // 5, h // 4, w // 2, 3 * h // 4]])
    x0, y0, x1, y1 = spec.boxes_to_low_res(box, image_size)[0]
    logits = torch.full((1, 1, spec.low_res, spec.low_res), -10.0)
    logits[..., y0 : y1 + 1, x0 : x1 + 1] = 10.0
    mask = (spec.logits_to_image(logits, image_size)[0, 0] > 0).numpy()
    expected = np.zeros(image_size, bool)
    expected[box[0, 1] : box[0, 3] + 1, box[0, 0] : box[0, 2] + 1] = True
    rows, cols = np.nonzero(mask)
    per_cell = max(h, w) / spec.low_res  # slice pixels per low-res cell along the longer axis
    assert mask.shape == image_size
    assert abs(rows.min() - box[0, 1]) <= per_cell + 1 and abs(rows.max() - box[0, 3]) <= per_cell + 1
    assert abs(cols.min() - box[0, 0]) <= per_cell + 1 and abs(cols.max() - box[0, 2]) <= per_cell + 1
    assert (mask & expected).sum() / expected.sum() > 0.95


def test_unknown_resize_policy_is_refused():
    with pytest.raises(ValueError, match="resize policy 'crop'"):
        InputSpec(size=256, resize="crop")


@pytest.mark.parametrize("size, image_size", [(256, (640, 480)), (256, (96, 200)), (1024, (256, 256))])
def test_low_res_boxes_map_back_to_slice_boxes_that_cover_the_originals(size, image_size):
    spec = InputSpec(size=size, resize="longest_side" if size == 256 else "stretch")
    rng = np.random.default_rng(0)
    h, w = image_size
    for _ in range(50):
        x0, x1 = sorted(rng.integers(0, w, 2))
        y0, y1 = sorted(rng.integers(0, h, 2))
        box = np.array([[x0, y0, x1, y1]])
        back = spec.low_res_boxes_to_slice(spec.boxes_to_low_res(box, image_size), image_size)[0]
        step = int(np.ceil(max(h, w) / spec.low_res)) + 1  # one low-res cell, in slice pixels
        assert back[0] <= x0 and back[1] <= y0 and back[2] >= x1 and back[3] >= y1
        assert np.abs(back - box[0]).max() <= step
