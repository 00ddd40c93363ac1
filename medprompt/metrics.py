"""Per-slice overlap and distance scores (MONAI's metrics), with empty masks handled explicitly.

Both masks empty: Dice = IoU = 1 and HD95 = 0 (a correct "nothing here").
Exactly one empty: Dice = IoU = 0 and HD95 undefined (NaN).
HD95 is in millimetres when a pixel spacing is given, else in pixels.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import numpy as np
import pandas as pd
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two binary arrays; 1 when both are empty."""
    total = int(pred.sum()) + int(gt.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(pred, gt).sum()) / total


def slice_scores(pred: np.ndarray, gt: np.ndarray, spacing: np.ndarray | None = None) -> pd.DataFrame:
    """Dice, IoU and HD95 for each of N slices of binary masks [N,H,W]; spacing [N,2] (row, col) in mm."""
    pred = np.asarray(pred).astype(bool)
    gt = np.asarray(gt).astype(bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    n = len(pred)
    dice = np.ones(n)
    iou = np.ones(n)
    hd95 = np.zeros(n)
    pred_any = pred.reshape(n, -1).any(1)
    gt_any = gt.reshape(n, -1).any(1)
    one_empty = pred_any ^ gt_any
    dice[one_empty] = iou[one_empty] = 0.0
    hd95[one_empty] = np.nan
    both = np.flatnonzero(pred_any & gt_any)
    if len(both):
        p = torch.from_numpy(pred[both, None].astype(np.float32))
        g = torch.from_numpy(gt[both, None].astype(np.float32))
        dice[both] = compute_dice(p, g, include_background=True).numpy()[:, 0]
        iou[both] = compute_iou(p, g, include_background=True).numpy()[:, 0]
        sp = None if spacing is None else [[float(v) for v in spacing[k]] for k in both]
        with monai_deprecations_silenced():
            hd95[both] = compute_hausdorff_distance(p, g, include_background=True, percentile=95, spacing=sp).numpy()[:, 0]
    return pd.DataFrame({"dice": dice, "iou": iou, "hd95": hd95})


@contextlib.contextmanager
def monai_deprecations_silenced() -> Iterator[None]:
    """MONAI 1.5-1.6's distance metrics warn about their own internal `get_mask_edges(always_return_as_numpy=...)`
    call, which a user cannot act on; other warnings still show."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        yield


def mean_std(values: pd.Series, digits: int = 3) -> str:
    """`0.912 +- 0.041` (population std, NaN skipped); one value alone has no spread to show, none gives n/a."""
    values = pd.Series(values).dropna()
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f} (one value)"
    return f"{values.mean():.{digits}f} +- {values.std(ddof=0):.{digits}f}"


def summary_line(table: pd.DataFrame, columns: tuple[str, ...] = ("dice", "iou", "hd95")) -> str:
    """`dice 0.912 +- 0.041 | ...` over the rows of a score table."""
    return " | ".join(f"{c} {mean_std(table[c])}" for c in columns if c in table)
