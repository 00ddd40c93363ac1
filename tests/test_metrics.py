"""Per-slice Dice / IoU / HD95 on shapes with known answers."""

import numpy as np
import pandas as pd
import pytest

from medprompt.metrics import mean_std, slice_scores


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


def test_mean_std_shows_no_spread_for_one_value_and_skips_nan():
    assert mean_std(pd.Series([0.5, 0.7, np.nan])) == "0.600 +- 0.100"
    assert mean_std(pd.Series([0.91234]), 4) == "0.9123 (one value)"
    assert mean_std(pd.Series([np.nan])) == "n/a"
