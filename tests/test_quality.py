"""quality.csv: the cases a user should look at first, from the predicted masks alone; and the per-slice signals
beside the predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medprompt.inference.consistency import consistent_masks
from medprompt.inference.quality import quality_table, review_line, slice_signals


def disc(size: int = 32, centre: tuple[int, int] = (16, 16), radius: int = 6) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2).astype(np.uint8)


def manifest(cases: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame([{"case": case, "slice_index": i} for case, n in cases.items() for i in range(n)])


def test_a_stray_blob_a_gap_and_an_empty_case_are_named_and_a_clean_case_is_not():
    table = manifest({"clean": 4, "stray": 5, "gap": 4, "empty": 3})
    s = np.zeros((len(table), 32, 32), np.uint8)
    s[0:4] = disc()                                # clean: 4 x 113 pixels
    s[4:7] = disc()                                # stray: the structure on slices 0-2 ...
    s[8, :7, :7] = 1                               # ... and a 49-pixel blob on slice 4, apart from it
    s[[9, 10, 12]] = disc()                        # gap: nothing on slice 2
    after = consistent_masks(table, s)
    after[9:13] = s[9:13]  # the gap case predicted without the volume step, which would keep slices 0-1 only
    estimates = np.linspace(0.5, 0.9, len(table))  # the mean counts the slices with a mask left only
    quality = quality_table(table, slice_signals(s, after, estimates)).set_index("case")
    assert quality.loc["clean"].tolist() == [4, 4, 4 * 113, 0, 0.0, round(estimates[:4].mean(), 4), ""]
    assert quality.loc["stray", "decoder_iou"] == round(estimates[4:7].mean(), 4)
    assert np.isnan(quality.loc["empty", "decoder_iou"])
    stray = quality.loc["stray"]
    assert stray.slices_with_mask == 3 and stray.removed_fraction == round(49 / (3 * 113 + 49), 4)
    assert stray.review == "the volume step removed 13% of the predicted pixels (blobs apart from the structure)"
    assert quality.loc["gap", "gap_slices"] == 1
    assert quality.loc["gap", "review"].startswith("no mask on slice(s) 2 between masked slices")
    assert quality.loc["empty", "review"] == "no mask on any slice" and quality.loc["empty", "mask_pixels"] == 0
    assert review_line(quality.reset_index()) == "3 of 4 cases to review (quality.csv)"


def test_slices_are_taken_in_their_volume_order_and_a_small_share_removed_is_not_flagged():
    table = manifest({"a": 5}).iloc[[3, 0, 4, 1, 2]]  # rows out of order
    s = np.zeros((5, 32, 32), np.uint8)
    s[:] = disc()
    s[2, :3, :3] = 1  # 9 pixels on slice 4 beside 5 x 113: removed, under the review share
    quality = quality_table(table, slice_signals(s, consistent_masks(table, s)))
    assert quality.gap_slices.tolist() == [0] and quality.removed_fraction.iloc[0] == round(9 / (5 * 113 + 9), 4)
    assert quality.review.tolist() == [""]
    assert review_line(quality) == "no case flagged for review among 1 (quality.csv)"


def test_per_slice_signals_count_the_kept_and_removed_pixels_and_the_box_fill():
    before = np.zeros((4, 32, 32), np.uint8)
    before[0] = disc()                       # 113 pixels in a 13 x 13 box
    before[1, 2:6, 3:8] = 1                  # a 4 x 5 rectangle fills its box
    before[1, 20:22, 20:22] = 1              # and a 4-pixel blob the volume step removes
    before[2, 0, 0] = before[2, 9, 9] = 1    # two pixels at the corners of a 10 x 10 box
    after = before.copy()
    after[1, 20:22, 20:22] = 0
    signals = slice_signals(before, after, np.array([0.91234, 0.5, 0.25, np.nan], np.float32))
    assert signals.mask_pixels.tolist() == [113, 20, 2, 0] and signals.removed_pixels.tolist() == [0, 4, 0, 0]
    assert signals.box_fill.tolist()[:3] == [round(113 / 169, 4), 1.0, 0.02] and np.isnan(signals.box_fill.iloc[3])
    assert signals.decoder_iou.tolist()[:3] == [0.9123, 0.5, 0.25] and np.isnan(signals.decoder_iou.iloc[3])
    assert slice_signals(before, after).decoder_iou.isna().all()  # no box-prompted pass: no estimate
