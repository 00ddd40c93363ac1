"""Overlay pictures: which slices are drawn, what the header says, and that they work on any prediction folder."""

import cv2
import numpy as np

from medprompt.data.dataset import PreprocessedDataset
from medprompt.evaluation.overlays import LINE, chosen_slices, draw_overlays
from medprompt.inference.store import write_predictions


def test_largest_target_and_worst_dice_slices_are_chosen():
    truth = np.zeros((4, 8, 8), bool)
    truth[0, 1:3, 1:3] = True   # 4 px, predicted well
    truth[1, 0:6, 0:6] = True   # 36 px: the largest, predicted well
    predicted = truth.copy()
    predicted[2, 4:6, 4:6] = True  # a false positive on an empty slice: Dice 0, the worst
    assert chosen_slices(truth, predicted) == {"largest": 1, "worst": 2}
    assert chosen_slices(np.zeros((2, 4, 4), bool), np.zeros((2, 4, 4), bool)) == {}


def test_overlays_of_a_prediction_folder_have_a_header_and_two_slices_per_case(synthetic_dataset, tmp_path):
    dataset = PreprocessedDataset(synthetic_dataset)
    rows = dataset.rows("test")
    masks = (dataset.masks(rows) == 1).astype(np.uint8)
    predicted = masks.copy()
    predicted[0] = 0  # the first slice missed entirely
    manifest = dataset.manifest.iloc[rows].reset_index(drop=True)
    write_predictions(tmp_path / "pred", manifest, predicted, {"target_label": 1})
    write_predictions(tmp_path / "bound", manifest, masks, {"target_label": 1})
    written = draw_overlays(dataset, tmp_path / "pred", tmp_path / "overlays", tmp_path / "bound")
    case = manifest.case.iloc[0]
    assert sorted(p.name for p in written) == [f"{case}_largest.png", f"{case}_worst.png"]
    picture = cv2.imread(str(tmp_path / "overlays" / f"{case}_worst.png"))
    assert picture.shape == (2 * LINE + 6 + 512, 512, 3)  # header band over the 64 px slice drawn at x8
    header = picture[: 2 * LINE + 6]
    assert (header == (80, 220, 80)).all(axis=2).any() and (header == (0, 160, 255)).all(axis=2).any()
