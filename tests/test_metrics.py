"""Per-slice Dice / IoU / HD95 on shapes with known answers."""

import numpy as np
import pandas as pd
import pytest

from medprompt.evaluation.metrics import mean_std, slice_scores, structure_scores


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
    assert scores.dice[2] == 1 and scores.iou[2] == 1 and np.isnan(scores.hd95[2])


def test_one_empty_mask_rule_for_slices_and_structures():
    empty, blob = np.zeros((8, 8), bool), np.zeros((8, 8), bool)
    blob[2:5, 2:5] = True
    for pred, gt, expected in ((empty, empty, 1.0), (blob, empty, 0.0), (empty, blob, 0.0)):
        volume = structure_scores(pred[None], gt[None], (1.0, 1.0, 1.0))
        per_slice = slice_scores(pred[None], gt[None]).iloc[0]
        assert volume["dice"] == volume["iou"] == per_slice.dice == per_slice.iou == expected
        assert np.isnan(volume["hd95_mm"]) and np.isnan(volume["assd_mm"]) and np.isnan(per_slice.hd95)


def test_mean_std_shows_no_spread_for_one_value_and_skips_nan():
    assert mean_std(pd.Series([0.5, 0.7, np.nan])) == "0.600 +- 0.100"
    assert mean_std(pd.Series([0.91234]), 4) == "0.9123 (one value)"
    assert mean_std(pd.Series([np.nan])) == "n/a"
