"""Map boxes drawn on the original images into preprocessed slice pixels, through the images' own geometry.

Input CSV: `case, slice_index, x_min, y_min, x_max, y_max[, label]`, inclusive
pixel indices of the source image (x the column, y the row, as in
`medprompt.volume_io`); `case` is the manifest's case name or the source image
file name without suffix (`patient001_ED` or `patient001_frame01`);
`slice_index` is the index along the source volume's slice axis (0 for 2D).
Output: `slice_id, x_min, y_min, x_max, y_max`, inclusive pixel indices of
the preprocessed slice, the format `medprompt train --boxes` reads. A box is
mapped by its pixel edges, then rounded outwards, and clipped to the square.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from medprompt.box_table import BOX_COLUMNS, read_table
from medprompt.errors import MedpromptError
from medprompt.geometry import SliceGeometry, source_to_slice
from medprompt.volume_io import strip_suffix

SOURCE_COLUMNS = ("case", "slice_index", *BOX_COLUMNS)


def map_source_boxes(csv_path: str | os.PathLike, manifest: pd.DataFrame) -> pd.DataFrame:
    """Boxes from a source-pixel CSV mapped to `slice_id, x_min, y_min, x_max, y_max` in preprocessed pixels."""
    path = Path(csv_path)
    table = _read(path)
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


def _read(path: Path) -> pd.DataFrame:
    """The box CSV, with every required column present and numeric coordinates."""
    table = read_table(path, SOURCE_COLUMNS, allow_empty=True)
    numbers = table[["slice_index", *BOX_COLUMNS]].apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna().any(axis=1).to_numpy()
    if bad.any():
        raise MedpromptError(f"{path}: row {int(np.flatnonzero(bad)[0]) + 2}: slice_index and box coordinates must be numbers")
    table[["slice_index", *BOX_COLUMNS]] = numbers
    return table


def _slice_lookup(manifest: pd.DataFrame) -> dict[tuple[str, int], pd.Series]:
    """(case or source file stem, slice_index) -> manifest row."""
    lookup = {}
    for _, row in manifest.iterrows():
        index = int(row["slice_index"])
        lookup.setdefault((strip_suffix(row["source_image"]), index), row)
        lookup[(str(row["case"]), index)] = row
    return lookup
