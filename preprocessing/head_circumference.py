"""Fetal head circumference (HC18): ellipse fit of a head mask, perimeter x pixel size, and the challenge CSVs.

`HeadCircumferenceReference` is HC18's evaluation hook: the CSV's pixel size
for its PNGs (which carry none) and the head circumference error per image.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from medprompt.common.errors import MedpromptError


def ellipse_perimeter(semi_a: float, semi_b: float) -> float:
    """Perimeter of an ellipse from its semi-axes (Ramanujan's second approximation, as HC18 uses).

    Relative error below 1e-9 for axis ratios above 0.5 (fetal heads), 4e-4 at worst.
    """
    h = ((semi_a - semi_b) / (semi_a + semi_b)) ** 2 if semi_a + semi_b > 0 else 0.0
    return math.pi * (semi_a + semi_b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def fit_ellipse(mask: np.ndarray) -> tuple[float, float, float, float, float] | None:
    """(centre x, centre y, semi-axis a, semi-axis b, angle in degrees) of the largest region of a 2D mask.

    The fit runs through the boundary pixel centres, which lie half a pixel
    inside the region's edge; the semi-axes are widened by that half pixel.
    None when the mask is empty or too small to fit (fewer than 5 boundary points).
    """
    contours, _ = cv2.findContours((np.asarray(mask) > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return None
    largest = max(contours, key=cv2.contourArea)
    if len(largest) < 5:
        return None
    (cx, cy), (width, height), angle = cv2.fitEllipse(largest)
    return cx, cy, width / 2 + 0.5, height / 2 + 0.5, angle


def head_circumference_mm(mask: np.ndarray, pixel_size_mm: float) -> float:
    """Head circumference in mm of the ellipse fitted to a mask; NaN when no ellipse can be fitted."""
    ellipse = fit_ellipse(mask)
    if ellipse is None:
        return math.nan
    return ellipse_perimeter(ellipse[2], ellipse[3]) * pixel_size_mm


def read_hc_table(path: str | os.PathLike) -> pd.DataFrame:
    """An HC18 CSV (`filename, pixel size(mm)[, head circumference (mm)]`) indexed by file name.

    Columns out: `pixel_size_mm` and, for the training CSV, `hc_mm`.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise MedpromptError(f"{path}: HC18 CSV not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MedpromptError(f"{path}: not a readable CSV ({exc})") from None
    renamed = {}
    for column in table.columns:
        key = column.strip().lower()
        if key == "filename":
            renamed[column] = "filename"
        elif "pixel" in key:
            renamed[column] = "pixel_size_mm"
        elif "circumference" in key:
            renamed[column] = "hc_mm"
    table = table.rename(columns=renamed)
    if "filename" not in table.columns or "pixel_size_mm" not in table.columns:
        raise MedpromptError(f"{path}: expected columns 'filename' and 'pixel size(mm)', got {list(table.columns)}")
    table["filename"] = table["filename"].astype(str).str.strip()
    for column in ("pixel_size_mm", "hc_mm"):
        if column in table.columns:
            values = pd.to_numeric(table[column], errors="coerce")
            bad = table.filename[values.isna() | (values <= 0)]
            if len(bad):
                value = table[column][bad.index[0]]
                shown = "empty" if pd.isna(value) else repr(str(value))
                raise MedpromptError(f"{path}: {column} of {bad.iloc[0]!r} is {shown}, not a positive number")
            table[column] = values
    return table.set_index("filename")[[c for c in ("pixel_size_mm", "hc_mm") if c in table.columns]]


@dataclass(frozen=True)
class HeadCircumferenceReference:
    """The HC18 CSV as `evaluate` reads it: pixel sizes, and the head circumference error of a predicted mask."""

    table: pd.DataFrame
    summary: dict[str, str] = field(default_factory=lambda: {"hc_error_mm": "HC error"})

    def pixel_size(self, case: str) -> float | None:
        name = f"{case}.png"
        return float(self.table.loc[name, "pixel_size_mm"]) if name in self.table.index else None

    def scores(self, case: str, mask: np.ndarray) -> dict[str, float]:
        """Predicted head circumference and its absolute error against the CSV's (mm); none for an unknown case."""
        size = self.pixel_size(case)
        if size is None:
            return {}
        predicted = head_circumference_mm(mask.reshape(mask.shape[-2:]), size)
        reference = float(self.table.loc[f"{case}.png", "hc_mm"]) if "hc_mm" in self.table else math.nan
        return {"hc_pred_mm": predicted, "hc_ref_mm": reference, "hc_error_mm": abs(predicted - reference)}


def hc18_reference(gt_dir: Path, csv: Path | None) -> HeadCircumferenceReference | None:
    """The given CSV, else every `*pixel_size*.csv` in GT_DIR or its parent; None when there is none."""
    if csv is not None:
        return HeadCircumferenceReference(read_hc_table(csv))
    found = sorted({*gt_dir.glob("*pixel_size*.csv"), *gt_dir.parent.glob("*pixel_size*.csv")})
    return HeadCircumferenceReference(pd.concat([read_hc_table(p) for p in found])) if found else None
