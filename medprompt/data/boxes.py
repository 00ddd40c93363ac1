"""Box supervision: tight boxes derived from masks or read from a user's CSV, and the few-shot training set.

A box is (x_min, y_min, x_max, y_max) in inclusive pixel indices of the
preprocessed slice; a slice may have several boxes (one per connected
component) or none. A user's CSV is either `slice_id, x_min, y_min, x_max,
y_max` in preprocessed slice pixels, or `case, slice_index, x_min, y_min,
x_max, y_max[, label]` in source image pixels (x the column, y the row, as in
`medprompt.data.volume_io`; `case` is the manifest's case name or the source file
name without suffix; `slice_index` is along the source volume's slice axis, 0
for 2D). Source boxes are mapped through the images' own geometry by their
pixel edges, rounded outwards and clipped to the square.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import PreprocessedDataset
from medprompt.data.geometry import SliceGeometry, source_to_slice
from medprompt.data.volume_io import strip_suffix

Boxes = dict[str, np.ndarray]
BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")
SOURCE_COLUMNS = ("case", "slice_index", *BOX_COLUMNS)


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
    table = _read_box_table(path, BOX_COLUMNS)
    if "slice_id" not in table.columns:
        if not {"case", "slice_index"} <= set(table.columns):
            raise MedpromptError(
                f"{path}: needs slice_id (preprocessed pixels) or case and slice_index (source pixels) columns"
            )
        table = map_source_boxes(path, dataset.manifest)
    unknown = sorted(set(table.slice_id) - set(dataset.index_of))
    if unknown:
        raise MedpromptError(f"{path}: {len(unknown)} slice_id not in {dataset.manifest_path} (e.g. {unknown[0]!r})")
    coords = _numbers(table, BOX_COLUMNS, path, "box coordinates")
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
    boxes = {sid: np.unique(rounded[idx], axis=0) for sid, idx in table.groupby("slice_id", sort=False).indices.items()}
    repeats = len(table) - sum(len(b) for b in boxes.values())
    if repeats:
        warnings.warn(f"{path}: {repeats} {'rows repeat' if repeats > 1 else 'row repeats'} a box given earlier for "
                      "the same slice; each box counts once")
    return boxes


def write_box_csv(boxes: Boxes, path: str | os.PathLike) -> None:
    """Write boxes in the format `read_box_csv` reads."""
    rows = [(sid, *box) for sid, arr in boxes.items() for box in arr]
    pd.DataFrame(rows, columns=["slice_id", *BOX_COLUMNS]).to_csv(path, index=False)


def _read_box_table(path: str | os.PathLike, required: tuple[str, ...], allow_empty: bool = False) -> pd.DataFrame:
    """A CSV with the `required` columns (and at least one row unless allowed), or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MedpromptError(f"{path}: box file not found")
    try:
        table = pd.read_csv(path, dtype={"slice_id": str, "case": str})
    except pd.errors.EmptyDataError:
        raise MedpromptError(f"{path}: box file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise MedpromptError(f"{path}: not a readable CSV ({exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise MedpromptError(f"{path}: missing columns {missing}; expected {','.join(required)}")
    if table.empty and not allow_empty:
        raise MedpromptError(f"{path}: box file has a header but no boxes")
    return table


def map_source_boxes(csv_path: str | os.PathLike, manifest: pd.DataFrame) -> pd.DataFrame:
    """Boxes from a source-pixel CSV mapped to `slice_id, x_min, y_min, x_max, y_max` in preprocessed pixels."""
    path = Path(csv_path)
    table = read_source_table(path)
    lookup = _slice_lookup(manifest)
    out = []
    for i, box in enumerate(table.itertuples(index=False)):
        where = f"{path}: row {i + 2}"
        key = (str(box.case), int(box.slice_index))
        if key not in lookup:
            raise MedpromptError(f"{where}: case {box.case!r} slice {box.slice_index} is not in the manifest")
        row = lookup[key]
        geometry = SliceGeometry.from_row(row)
        x0, y0, x1, y1 = (float(getattr(box, c)) for c in BOX_COLUMNS)
        if not (0 <= x0 <= x1 <= geometry.src_width - 1 and 0 <= y0 <= y1 <= geometry.src_height - 1):
            raise MedpromptError(
                f"{where}: box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside the {geometry.src_width}x{geometry.src_height} "
                f"source image of {box.case!r} or has x_min > x_max / y_min > y_max"
            )
        (ex0, ex1), (ey0, ey1) = source_to_slice(np.array([x0, x1 + 1]), np.array([y0, y1 + 1]), geometry)
        size = geometry.size
        if ex1 <= 0 or ey1 <= 0 or ex0 >= size or ey0 >= size:
            raise MedpromptError(f"{where}: box of {box.case!r} lies in the part of the image cropped away by preprocessing")
        mapped = (np.floor(ex0), np.floor(ey0), np.ceil(ex1) - 1, np.ceil(ey1) - 1)
        out.append((row["slice_id"], *(int(np.clip(v, 0, size - 1)) for v in mapped)))
    return pd.DataFrame(out, columns=["slice_id", *BOX_COLUMNS])


def read_source_table(path: Path) -> pd.DataFrame:
    """A source-pixel box CSV (`SOURCE_COLUMNS`), with every required column present and numeric coordinates;
    a header alone is an empty table."""
    table = _read_box_table(path, SOURCE_COLUMNS, allow_empty=True)
    columns = ("slice_index", *BOX_COLUMNS)
    table[list(columns)] = _numbers(table, columns, path, "slice_index and box coordinates")
    return table


def _numbers(table: pd.DataFrame, columns: tuple[str, ...], path: Path, what: str) -> pd.DataFrame:
    """`columns` of `table` as numbers, or a one-line error naming the first row where one is not."""
    numbers = table[list(columns)].apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna().any(axis=1).to_numpy() | ~np.isfinite(numbers.to_numpy(dtype=float)).all(axis=1)
    if bad.any():
        raise MedpromptError(f"{path}: row {int(np.flatnonzero(bad)[0]) + 2}: {what} must be numbers")
    return numbers


def _slice_lookup(manifest: pd.DataFrame) -> dict[tuple[str, int], pd.Series]:
    """(case or source file stem, slice_index) -> manifest row."""
    lookup = {}
    for _, row in manifest.iterrows():
        index = int(row["slice_index"])
        lookup.setdefault((strip_suffix(row["source_image"]), index), row)
        lookup[(str(row["case"]), index)] = row
    return lookup


@dataclass
class TrainingSet:
    """The training slices: their manifest rows, ids and boxes (slice pixels)."""

    rows: np.ndarray
    slice_ids: list[str]
    boxes: Boxes


def select_training_set(
    dataset: PreprocessedDataset, train_cfg: dict[str, Any], boxes_csv: str | os.PathLike | None = None
) -> TrainingSet:
    """Training slices with their boxes: from the user's box file, or derived from the train split's masks.

    With `shots`, a subset of that many slices (among those with the target) is drawn with `subset` (else `seed`).
    """
    if boxes_csv is not None:
        boxes = read_box_csv(boxes_csv, dataset)
        candidates = np.array(sorted(dataset.index_of[s] for s in boxes))
    else:
        if not dataset.has_masks:
            raise MedpromptError(f"{dataset.slices_path}: no masks to derive boxes from; give --boxes FILE.csv")
        candidates = dataset.rows("train", with_target=True)
        if "target_area" in dataset.manifest.columns:
            area = dataset.manifest.target_area.to_numpy()[candidates]
            candidates = candidates[area >= train_cfg["min_target_area"]]
        label = train_cfg["label"] if train_cfg["label"] is not None else dataset.target_label
        boxes = boxes_from_dataset(dataset, candidates, int(label), train_cfg["min_target_area"])
        candidates = np.array([r for r in candidates if len(boxes[dataset.manifest.slice_id.iloc[r]])], dtype=np.int64)
    if len(candidates) == 0:
        raise MedpromptError(f"{dataset.root}: no training slice with a box")
    shots = train_cfg["shots"]
    if shots is not None:
        if shots > len(candidates):
            raise MedpromptError(f"--shots {shots}: the train split of {dataset.root} has only {len(candidates)} "
                                 f"slices with the target; use --shots {len(candidates)} or fewer, or preprocess more "
                                 "patients, frames or views into it")
        rng = np.random.default_rng(train_cfg["seed"] if train_cfg.get("subset") is None else train_cfg["subset"])
        candidates = np.sort(rng.choice(candidates, size=shots, replace=False))
    ids = [dataset.manifest.slice_id.iloc[r] for r in candidates]
    return TrainingSet(candidates, ids, {s: boxes[s] for s in ids})
