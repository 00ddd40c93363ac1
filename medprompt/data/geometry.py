"""In-plane slice geometry: resample to a target pixel spacing, centre crop/pad to a square, and the inverse.

The forward transform takes a source slice (rows x cols, pixel spacing in mm)
to a preprocessed S x S slice in two steps:

1. resample to the target spacing (skipped when the target is None): the
   resampled slice covers the same physical extent, pixel edges aligned at the
   first edge, so resampled pixel centre i lies at source coordinate
   (i + 0.5) * scale - 0.5 with scale = res_spacing / src_spacing;
2. centre crop/pad to S x S: resampled pixel (r, c) lands at (r + offset_y,
   c + offset_x) of the square slice (a negative offset is a crop).

The manifest stores, per slice, every number the inverse needs (`COLUMNS`):

    src_height, src_width          rows, cols of the source slice
    src_spacing_y, src_spacing_x   source pixel spacing in mm (row, col); NaN when unknown
    res_height, res_width          rows, cols after resampling (= source when not resampled)
    res_spacing_y, res_spacing_x   pixel spacing after resampling in mm
    offset_y, offset_x             position of resampled pixel (0, 0) in the square slice
    size                           S

Labels are resampled per class (one-hot, linear, then argmax: smooth
boundaries, no class drift) or by nearest neighbour; probabilities and
intensities linearly (images optionally cubic). Regions cropped away come back
as background (labels) or 0 (probabilities).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
from scipy import ndimage

from medprompt.common.errors import MedpromptError

COLUMNS = (
    "src_height",
    "src_width",
    "src_spacing_y",
    "src_spacing_x",
    "res_height",
    "res_width",
    "res_spacing_y",
    "res_spacing_x",
    "offset_y",
    "offset_x",
    "size",
)
IMAGE_ORDERS = {"nearest": 0, "linear": 1, "cubic": 3}
LABEL_INTERPOLATIONS = ("nearest", "linear")


@dataclass(frozen=True)
class SliceGeometry:
    """Everything needed to map one slice to the preprocessed square and back."""

    src_height: int
    src_width: int
    src_spacing_y: float
    src_spacing_x: float
    res_height: int
    res_width: int
    res_spacing_y: float
    res_spacing_x: float
    offset_y: int
    offset_x: int
    size: int

    @classmethod
    def plan(
        cls,
        shape: tuple[int, int],
        spacing: tuple[float, float],
        target_spacing: tuple[float, float] | None,
        size: int,
    ) -> "SliceGeometry":
        """The geometry of a source slice of `shape` (rows, cols) and `spacing` (mm) under a config."""
        height, width = int(shape[0]), int(shape[1])
        sy, sx = float(spacing[0]), float(spacing[1])
        if target_spacing is None:
            ty, tx, res_h, res_w = sy, sx, height, width
        else:
            ty, tx = float(target_spacing[0]), float(target_spacing[1])
            if not all(math.isfinite(v) and v > 0 for v in (sy, sx)):
                known = f"{sy:g} x {sx:g} mm" if math.isfinite(sy) and math.isfinite(sx) else "unknown (a PNG has none)"
                raise MedpromptError(f"cannot resample to {ty:g} x {tx:g} mm: the source pixel spacing is {known}")
            res_h, res_w = max(1, round(height * sy / ty)), max(1, round(width * sx / tx))
        return cls(height, width, sy, sx, res_h, res_w, ty, tx, (size - res_h) // 2, (size - res_w) // 2, int(size))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "SliceGeometry":
        """The geometry recorded in a manifest row."""
        missing = [c for c in COLUMNS if c not in row]
        if missing:
            raise MedpromptError(f"manifest lacks the geometry columns {missing}; re-run `medprompt preprocess`")
        ints = {"src_height", "src_width", "res_height", "res_width", "offset_y", "offset_x", "size"}
        return cls(**{c: int(row[c]) if c in ints else float(row[c]) for c in COLUMNS})

    def to_columns(self) -> dict[str, Any]:
        """The manifest columns of this geometry."""
        return asdict(self)

    @property
    def resampled(self) -> bool:
        """Whether the slice is resampled (otherwise only cropped/padded)."""
        same_spacing = all(
            a == b or (math.isnan(a) and math.isnan(b))
            for a, b in ((self.res_spacing_y, self.src_spacing_y), (self.res_spacing_x, self.src_spacing_x))
        )
        return (self.res_height, self.res_width) != (self.src_height, self.src_width) or not same_spacing

    @property
    def scale(self) -> tuple[float, float]:
        """Source pixels per resampled pixel (row, col)."""
        if not self.resampled:
            return 1.0, 1.0
        return self.res_spacing_y / self.src_spacing_y, self.res_spacing_x / self.src_spacing_x


def forward_image(image: np.ndarray, geometry: SliceGeometry, interpolation: str = "linear") -> np.ndarray:
    """Source intensities [rows,cols] -> float32 [S,S] (resampled, then centre crop/pad with 0)."""
    order = _image_order(interpolation)
    image = np.asarray(image, dtype=np.float32)
    _check_shape(image, (geometry.src_height, geometry.src_width), "source slice")
    resampled = _resample(image, (geometry.res_height, geometry.res_width), geometry.scale, order)
    return _place(resampled, geometry.offset_y, geometry.offset_x, (geometry.size, geometry.size), 0.0)


def forward_labels(labels: np.ndarray, geometry: SliceGeometry, interpolation: str = "linear") -> np.ndarray:
    """Source label map [rows,cols] -> uint8 [S,S] (per-class resampling, then centre crop/pad with 0)."""
    _check_shape(labels, (geometry.src_height, geometry.src_width), "source label slice")
    resampled = _resample_labels(labels, (geometry.res_height, geometry.res_width), geometry.scale, interpolation)
    return _place(resampled, geometry.offset_y, geometry.offset_x, (geometry.size, geometry.size), 0)


def inverse_labels(labels: np.ndarray, geometry: SliceGeometry, interpolation: str = "linear") -> np.ndarray:
    """Preprocessed label map [S,S] -> uint8 [rows,cols] on the source grid."""
    _check_shape(labels, (geometry.size, geometry.size), "preprocessed label slice")
    uncropped = _place(
        np.asarray(labels, dtype=np.uint8), -geometry.offset_y, -geometry.offset_x, (geometry.res_height, geometry.res_width), 0
    )
    inverse_scale = tuple(1.0 / s for s in geometry.scale)
    return _resample_labels(uncropped, (geometry.src_height, geometry.src_width), inverse_scale, interpolation)


def inverse_probabilities(probabilities: np.ndarray, geometry: SliceGeometry) -> np.ndarray:
    """Preprocessed probabilities [S,S] -> float32 [rows,cols] on the source grid (linear)."""
    _check_shape(probabilities, (geometry.size, geometry.size), "preprocessed probability slice")
    uncropped = _place(
        np.asarray(probabilities, dtype=np.float32),
        -geometry.offset_y,
        -geometry.offset_x,
        (geometry.res_height, geometry.res_width),
        0.0,
    )
    inverse_scale = tuple(1.0 / s for s in geometry.scale)
    resampled = _resample(uncropped, (geometry.src_height, geometry.src_width), inverse_scale, 1)
    return np.clip(resampled, 0.0, 1.0)


def source_to_slice(x: np.ndarray, y: np.ndarray, geometry: SliceGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Continuous source pixel-edge coordinates (x = col, y = row) -> preprocessed slice pixel-edge coordinates."""
    scale_y, scale_x = geometry.scale
    return np.asarray(x) / scale_x + geometry.offset_x, np.asarray(y) / scale_y + geometry.offset_y


def pixels_cropped_away(mask: np.ndarray, geometry: SliceGeometry) -> int:
    """Count the nonzero source pixels whose centre falls outside the preprocessed square (lost to the crop)."""
    scale_y, scale_x = geometry.scale
    rows = (np.arange(geometry.src_height) + 0.5) / scale_y + geometry.offset_y
    cols = (np.arange(geometry.src_width) + 0.5) / scale_x + geometry.offset_x
    keep_rows = (rows >= 0) & (rows < geometry.size)
    keep_cols = (cols >= 0) & (cols < geometry.size)
    nonzero = np.asarray(mask) != 0
    return int(nonzero.sum() - nonzero[np.ix_(keep_rows, keep_cols)].sum())


def _image_order(interpolation: str) -> int:
    if interpolation not in IMAGE_ORDERS:
        raise MedpromptError(f"unknown image interpolation {interpolation!r}; choose one of {sorted(IMAGE_ORDERS)}")
    return IMAGE_ORDERS[interpolation]


def _check_shape(array: np.ndarray, expected: tuple[int, int], what: str) -> None:
    if tuple(array.shape) != tuple(expected):
        raise MedpromptError(f"{what} has shape {tuple(array.shape)}, the manifest geometry says {tuple(expected)}")


def _resample(array: np.ndarray, out_shape: tuple[int, int], scale: tuple[float, float], order: int) -> np.ndarray:
    """Resample a 2D array with pixel edges aligned; `scale` is input pixels per output pixel."""
    if tuple(out_shape) == array.shape and scale == (1.0, 1.0):
        return array.copy()
    offset = [0.5 * s - 0.5 for s in scale]
    return ndimage.affine_transform(
        array, np.asarray(scale), offset=offset, output_shape=tuple(out_shape), order=order, mode="nearest", prefilter=order > 1
    )


def _resample_labels(
    labels: np.ndarray, out_shape: tuple[int, int], scale: tuple[float, float], interpolation: str
) -> np.ndarray:
    if interpolation not in LABEL_INTERPOLATIONS:
        raise MedpromptError(f"unknown label interpolation {interpolation!r}; choose one of {list(LABEL_INTERPOLATIONS)}")
    labels = np.asarray(labels, dtype=np.uint8)
    if interpolation == "nearest" or (tuple(out_shape) == labels.shape and scale == (1.0, 1.0)):
        return _resample(labels, out_shape, scale, 0).astype(np.uint8)
    values = np.union1d([0], np.unique(labels)).astype(np.uint8)
    scores = np.stack([_resample((labels == v).astype(np.float32), out_shape, scale, 1) for v in values])
    return values[np.argmax(scores, axis=0)]


def _place(array: np.ndarray, offset_y: int, offset_x: int, out_shape: tuple[int, int], fill: float) -> np.ndarray:
    """Copy `array` into a new `out_shape` array at (offset_y, offset_x), cropping what falls outside."""
    out = np.full(out_shape, fill, dtype=array.dtype)
    y0, x0 = max(0, offset_y), max(0, offset_x)
    y1, x1 = min(out_shape[0], offset_y + array.shape[0]), min(out_shape[1], offset_x + array.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0:y1, x0:x1] = array[y0 - offset_y : y1 - offset_y, x0 - offset_x : x1 - offset_x]
    return out
