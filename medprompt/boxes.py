"""Tight box annotations: derived from masks, or read from a user's CSV.

A box is (x_min, y_min, x_max, y_max) in inclusive pixel indices of the
preprocessed slice. A slice may have several boxes (one per connected component)
or none.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medprompt.dataset import PreprocessedDataset
from medprompt.box_table import BOX_COLUMNS, read_table
from medprompt.errors import MedpromptError
from medprompt.source_boxes import map_source_boxes

Boxes = dict[str, np.ndarray]


def boxes_from_mask(mask: np.ndarray, min_area: int = 1) -> np.ndarray:
    """Tight boxes [K,4] of the 8-connected components of a 2D binary mask."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    stats = stats[1:]
    stats = stats[stats[:, cv2.CC_STAT_AREA] >= min_area]
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    w, h = stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT]
    return np.stack([x, y, x + w - 1, y + h - 1], axis=1).astype(np.int64).reshape(-1, 4)


def main_box(mask: np.ndarray, min_island: float = 0.0) -> np.ndarray | None:
    """One inclusive box [4] around the components of a 2D mask at least `min_island` x the largest's area.

    None when the mask is empty. `min_island=0` gives the tight box of all the foreground.
    """
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    stats = stats[1:]
    if count <= 1:
        return None
    area = stats[:, cv2.CC_STAT_AREA]
    stats = stats[area >= min_island * area.max()]
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    x_end, y_end = x + stats[:, cv2.CC_STAT_WIDTH] - 1, y + stats[:, cv2.CC_STAT_HEIGHT] - 1
    return np.array([x.min(), y.min(), x_end.max(), y_end.max()], dtype=np.int64)


def boxes_from_dataset(dataset: PreprocessedDataset, rows: np.ndarray, label: int, min_area: int = 1) -> Boxes:
    """Boxes of `label` for manifest rows, keyed by slice_id (an empty [0,4] array where absent)."""
    masks = dataset.masks(rows)
    ids = dataset.manifest.slice_id.to_numpy()[rows]
    return {sid: boxes_from_mask(m == label, min_area) for sid, m in zip(ids, masks)}


def read_box_csv(path: str | os.PathLike, dataset: PreprocessedDataset) -> Boxes:
    """Boxes in preprocessed slice pixels, validated, from either CSV layout.

    `slice_id,x_min,y_min,x_max,y_max` is in preprocessed slice pixels;
    `case,slice_index,x_min,y_min,x_max,y_max[,label]` is in source image pixels
    and is mapped through the same geometry as the images.
    """
    path = Path(path)
    table = read_table(path, BOX_COLUMNS)
    if "slice_id" not in table.columns:
        if not {"case", "slice_index"} <= set(table.columns):
            raise MedpromptError(
                f"{path}: needs slice_id (preprocessed pixels) or case and slice_index (source pixels) columns"
            )
        table = map_source_boxes(path, dataset.manifest)
    unknown = sorted(set(table.slice_id) - set(dataset.index_of))
    if unknown:
        raise MedpromptError(f"{path}: {len(unknown)} slice_id not in {dataset.manifest_path} (e.g. {unknown[0]!r})")
    coords = table[list(BOX_COLUMNS)]
    if coords.isna().any().any() or not all(np.issubdtype(t, np.number) for t in coords.dtypes):
        raise MedpromptError(f"{path}: box coordinates must be numbers on every row")
    _, height, width = dataset.shape
    x0, y0, x1, y1 = (coords[c].to_numpy() for c in BOX_COLUMNS)
    bad = (x0 < 0) | (y0 < 0) | (x1 > width - 1) | (y1 > height - 1) | (x0 > x1) | (y0 > y1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise MedpromptError(
            f"{path}: row {i + 2} box ({x0[i]}, {y0[i]}, {x1[i]}, {y1[i]}) of slice {table.slice_id.iloc[i]!r} "
            f"is outside the {width}x{height} image or has x_min > x_max / y_min > y_max"
        )
    rounded = np.stack([np.floor(x0), np.floor(y0), np.ceil(x1), np.ceil(y1)], axis=1).astype(np.int64)
    # a box given twice is one box (np.unique also orders a slice's boxes)
    return {sid: np.unique(rounded[idx], axis=0) for sid, idx in table.groupby("slice_id", sort=False).indices.items()}


def write_box_csv(boxes: Boxes, path: str | os.PathLike) -> None:
    """Write boxes in the format `read_box_csv` reads."""
    rows = [(sid, *box) for sid, arr in boxes.items() for box in arr]
    pd.DataFrame(rows, columns=["slice_id", *BOX_COLUMNS]).to_csv(path, index=False)

