"""Per-slice Dice / IoU / HD95 on shapes with known answers."""

import numpy as np
import pytest

from medprompt.metrics import slice_scores


def test_known_overlap_distance_and_empties():
    pred = np.zeros((3, 16, 16), bool)
    gt = np.zeros((3, 16, 16), bool)
    pred[0, 2:6, 2:6] = True  # 16 px
    gt[0, 2:6, 2:10] = True  # 32 px, overlap 16
    gt[1, 5, 5] = True  # prediction empty, ground truth not
    scores = slice_scores(pred, gt, spacing=np.array([[1.0, 0.5], [1, 1], [1, 1]]))
    assert scores.dice[0] == pytest.approx(2 * 16 / 48)
    assert scores.iou[0] == pytest.approx(16 / 32)
    # farthest gt boundary pixel (column 9) is 4 columns from the prediction (column 5): 4 x 0.5 mm
    assert scores.hd95[0] == pytest.approx(2.0, abs=0.3)
    assert scores.dice[1] == 0 and np.isnan(scores.hd95[1])
    assert scores.dice[2] == 1 and scores.hd95[2] == 0
