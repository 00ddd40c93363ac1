"""Box-only model selection: boxes of predictions against annotated boxes, on hand-computed cases."""

import numpy as np
import pytest
import torch

from medprompt.data.boxes import main_box
from medprompt.methods import Slices, build_method
from medprompt.training.selection import BoxSelector, box_iou, union_box
from tiny_backbone import build_tiny_backbone


def test_box_geometry_by_hand():
    mask = np.zeros((10, 10), bool)
    mask[2:5, 3:8] = True
    assert main_box(mask).tolist() == [3, 2, 7, 4]
    assert main_box(np.zeros((4, 4), bool)) is None
    mask[9, 9] = True  # a 1-pixel island: 1/15 of the main component
    assert main_box(mask).tolist() == [3, 2, 9, 9]
    assert main_box(mask, min_island=0.1).tolist() == [3, 2, 7, 4]
    assert main_box(mask, min_island=0.05).tolist() == [3, 2, 9, 9]
    assert box_iou(np.array([0, 0, 3, 3]), np.array([2, 2, 5, 5])) == pytest.approx(4 / 28)  # 16 + 16 - 4
    assert box_iou(np.array([0, 0, 1, 1]), np.array([5, 5, 6, 6])) == 0.0
    assert union_box(np.array([[10, 12, 20, 22], [5, 30, 8, 40]])).tolist() == [5, 12, 20, 40]


def test_score_is_the_mean_box_iou_and_empty_scores_zero(monkeypatch):
    backbone = build_tiny_backbone(seed=0).freeze()
    boxes = [np.array([[40, 40, 120, 140]]), np.array([[10, 10, 60, 60]]), np.array([[100, 30, 200, 90]])]
    selector = BoxSelector(backbone, Slices(torch.zeros(3, 256, 64, 64)), boxes, (256, 256))
    method = build_method(backbone, {"method": "conv_fc", "prompt_offset": "none"})

    def decode(embeddings, sparse, dense):  # foreground exactly on the first box, for every image
        logits = torch.full((len(embeddings), 1, 256, 256), -10.0)
        logits[..., 40:141, 40:121] = 10.0
        return logits

    monkeypatch.setattr(method, "decode", decode)
    expected = np.mean([1.0, box_iou(boxes[0][0], boxes[1][0]), box_iou(boxes[0][0], boxes[2][0])])
    assert selector.score(method) == pytest.approx(expected)
    monkeypatch.setattr(method, "decode", lambda e, s, d: torch.full((len(e), 1, 256, 256), -10.0))
    assert selector.score(method) == 0.0
