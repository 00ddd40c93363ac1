"""Box-constraint losses on small hand-computed cases, and against a per-band reference."""

import math

import numpy as np
import pytest
import torch

from medprompt.training.box_losses import BoxConstraintLoss, BoxLossConfig, band_rectangles, log_barrier

BIG = 40.0  # logit whose sigmoid is 1 (or 0) to float precision


def psi(z: float, t: float = 5.0) -> float:
    """The extended log-barrier written out by hand."""
    return -math.log(-z) / t if z <= -1 / t**2 else t * z - math.log(1 / t**2) / t + 1 / t


def test_log_barrier_matches_formula_and_is_continuous():
    z = torch.tensor([-10.0, -1.0, -0.04, -0.01, 0.0, 2.5])
    expected = [psi(v) for v in z.tolist()]
    assert torch.allclose(log_barrier(z, 5.0), torch.tensor(expected), atol=1e-6)
    assert log_barrier(torch.tensor([-1.0]), 5.0).item() == pytest.approx(0.0)
    left, right = log_barrier(torch.tensor([-0.04 - 1e-6, -0.04 + 1e-6]), 5.0)
    assert left.item() == pytest.approx(right.item(), abs=1e-4)


def test_bands_keep_the_remainder():
    rects = band_rectangles([np.array([[1, 2, 3, 13]])], band_width=5)
    # rows 2..13: bands 2-6, 7-11, 12-13 ; columns 1..3: one band 1-3 of width 3
    assert rects[:, 5].tolist() == [5, 5, 2, 3]
    assert rects[:3, 1].tolist() == [2, 7, 12] and rects[:3, 2].tolist() == [6, 11, 13]


def _logits_inside(boxes_per_image, size=8, inside=BIG, outside=-BIG):
    logits = torch.full((len(boxes_per_image), 1, size, size), outside)
    for i, boxes in enumerate(boxes_per_image):
        for x0, y0, x1, y1 in boxes:
            logits[i, 0, y0 : y1 + 1, x0 : x1 + 1] = inside
    return logits


def test_tightness_hand_computed():
    # box columns 1..3 (3 wide), rows 2..7 (6 high); p = 1 inside, 0 outside.
    boxes = [np.array([[1, 2, 3, 7]])]
    terms = BoxConstraintLoss()(_logits_inside(boxes), boxes)
    # horizontal bands: rows 2-6 (sum 15, need 5), row 7 (sum 3, need 1); vertical: cols 1-3 (sum 18, need 3)
    expected = psi(5 - 15) + psi(1 - 3) + psi(3 - 18)
    assert expected == pytest.approx(-math.log(300) / 5)
    assert terms["tightness"].item() == pytest.approx(expected, abs=1e-4)
    assert terms["outside"].item() == pytest.approx(0.0, abs=1e-6)


def test_outside_and_size_with_half_probabilities():
    boxes = [np.array([[1, 2, 3, 7]])]
    logits = torch.zeros(1, 1, 8, 8)  # p = 0.5 everywhere
    terms = BoxConstraintLoss()(logits, boxes)
    assert terms["outside"].item() == pytest.approx(math.log(2), abs=1e-6)
    area, total = 18, 32.0
    expected_size = (psi(0.5 * area - total) + psi(total - 0.9 * area)) / area
    assert terms["size"].item() == pytest.approx(expected_size, rel=1e-5)
    cfg = BoxLossConfig()
    expected_total = math.log(2) + cfg.w_tightness * terms["tightness"].item() + cfg.w_size * expected_size
    assert terms["loss"].item() == pytest.approx(expected_total, rel=1e-5)


def test_several_boxes_border_box_and_empty_slice():
    boxes = [np.array([[0, 0, 2, 2], [5, 4, 7, 7]]), np.zeros((0, 4), dtype=np.int64)]
    logits = _logits_inside(boxes)
    terms = BoxConstraintLoss()(logits, boxes)
    # image 0: box A 3x3 -> bands need 3 (sum 9) twice; box B 3 wide x 4 high touching the border:
    # horizontal band rows 4-7 (need 4, sum 12), vertical band cols 5-7 (need 3, sum 12). Image 1 has no box.
    per_image0 = 2 * psi(3 - 9) + psi(4 - 12) + psi(3 - 12)
    assert terms["tightness"].item() == pytest.approx(per_image0 / 2, abs=1e-4)
    # image 1 is all outside and predicted background: outside ~ 0; size ignores it
    assert terms["outside"].item() == pytest.approx(0.0, abs=1e-6)
    area, total = 9 + 12, 21.0
    expected_size = (psi(0.5 * area - total) + psi(total - 0.9 * area)) / area / 2
    assert terms["size"].item() == pytest.approx(expected_size, rel=1e-4)


def test_vectorised_equals_per_band_reference():
    rng = np.random.default_rng(3)
    logits = torch.from_numpy(rng.normal(size=(3, 1, 32, 32)).astype(np.float32))
    boxes = [np.array([[3, 4, 20, 17]]), np.array([[0, 10, 12, 31], [20, 0, 31, 9]]), np.array([[7, 7, 7, 9]])]
    terms = BoxConstraintLoss()(logits, boxes)
    p = torch.sigmoid(logits[:, 0]).double()
    ref = 0.0
    for i, image_boxes in enumerate(boxes):
        for x0, y0, x1, y1 in image_boxes:
            for s in range(y0, y1 + 1, 5):
                e = min(s + 4, y1)
                ref += psi((e - s + 1) - p[i, s : e + 1, x0 : x1 + 1].sum().item())
            for s in range(x0, x1 + 1, 5):
                e = min(s + 4, x1)
                ref += psi((e - s + 1) - p[i, y0 : y1 + 1, s : e + 1].sum().item())
    assert terms["tightness"].item() == pytest.approx(ref / 3, rel=1e-4)


def test_gradient_reaches_logits():
    logits = torch.zeros(2, 1, 16, 16, requires_grad=True)
    BoxConstraintLoss()(logits, [np.array([[2, 2, 9, 9]]), np.array([[0, 0, 15, 15]])])["loss"].backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    # outside the box the gradient pushes towards background (positive d loss / d logit)
    assert (logits.grad[0, 0, 12:, 12:] > 0).all()
