"""Overlap and surface-distance scores (MONAI's metrics) with one empty-mask rule, and their summaries.

Both masks empty: Dice = IoU = 1 (a correct "nothing here"), distances NaN.
Exactly one empty: Dice = IoU = 0, distances NaN (a distance to nothing is
undefined). NaN is left out of every mean. Distances are in millimetres when a
spacing is given, else in pixels.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance, compute_iou


def overlap_scores(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dice and IoU of each of N binary masks [N, ...] (MONAI), under the empty-mask rule above."""
    if len(pred) == 0:
        return np.zeros(0), np.zeros(0)
    p = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float32)[:, None])
    g = torch.from_numpy(np.ascontiguousarray(gt, dtype=np.float32)[:, None])
    dice = compute_dice(p, g, include_background=True, ignore_empty=False).numpy()[:, 0]
    iou = compute_iou(p, g, include_background=True, ignore_empty=False).numpy()[:, 0]
    return dice.astype(np.float64), iou.astype(np.float64)


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two binary arrays of one structure (1 when both are empty)."""
    return float(overlap_scores(np.asarray(pred)[None], np.asarray(gt)[None])[0][0])


def surface_distances(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | None) -> tuple[float, float]:
    """(HD95, ASSD) between two binary arrays, in the units of `spacing` (one value per axis; None: pixels).

    NaN unless both are non-empty: a distance to nothing is undefined.
    """
    if not (pred.any() and gt.any()):
        return math.nan, math.nan
    p = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float32))[None, None]
    g = torch.from_numpy(np.ascontiguousarray(gt, dtype=np.float32))[None, None]
    sp = None if spacing is None else [float(s) for s in spacing]
    with monai_deprecations_silenced():
        hd95 = compute_hausdorff_distance(p, g, include_background=True, percentile=95, spacing=sp)
        assd = compute_average_surface_distance(p, g, include_background=True, symmetric=True, spacing=sp)
    return float(hd95.item()), float(assd.item())


def structure_scores(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float]) -> dict[str, float]:
    """Dice, IoU, HD95 and ASSD of one binary structure in 2D or 3D (singleton axes dropped, with their spacing)."""
    keep = [axis for axis, n in enumerate(gt.shape) if n > 1]
    pred, gt = pred.reshape([gt.shape[a] for a in keep]), gt.reshape([gt.shape[a] for a in keep])
    dice_value, iou_value = overlap_scores(pred[None], gt[None])
    hd95, assd = surface_distances(pred, gt, [spacing[a] for a in keep])
    return {"dice": float(dice_value[0]), "iou": float(iou_value[0]), "hd95_mm": hd95, "assd_mm": assd}


def slice_scores(pred: np.ndarray, gt: np.ndarray, spacing: np.ndarray | None = None,
                 distances: bool = True) -> pd.DataFrame:
    """Dice, IoU (and HD95 unless `distances` is off) of each of N slices [N,H,W]; spacing [N,2] (row, col) in mm."""
    pred = np.asarray(pred).astype(bool)
    gt = np.asarray(gt).astype(bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    dice_values, iou_values = overlap_scores(pred, gt)
    table = pd.DataFrame({"dice": dice_values, "iou": iou_values})
    if distances:
        table["hd95"] = [surface_distances(p, g, None if spacing is None else spacing[k])[0]
                         for k, (p, g) in enumerate(zip(pred, gt))]
    return table


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
