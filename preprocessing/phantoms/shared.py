"""Helpers shared by the phantoms: smooth noise, speckle, ellipse geometry, distances, side files."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

PHASES = ("ED", "ES")


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Smooth random field in [-1, 1] with features about `scale_px` pixels wide (textures, bias)."""
    cells = (math.ceil(4 * shape[0] / scale_px) + 2, math.ceil(4 * shape[1] / scale_px) + 2)
    coarse = cv2.GaussianBlur(rng.standard_normal(size=cells).astype(np.float32), (0, 0), 2.0)
    coarse /= 2.0 * coarse.std() + 1e-6
    field = cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return np.clip(field, -1.0, 1.0)


def speckle(
    rng: np.random.Generator, shape: tuple[int, int], sigma_rows: float, sigma_cols: float, looks: int = 1
) -> np.ndarray:
    """Speckle of mean 1: magnitude of blurred complex Gaussian noise (Rayleigh), averaged over `looks`."""
    parts = rng.standard_normal(size=(2 * looks, *shape)).astype(np.float32)
    for k in range(2 * looks):
        parts[k] = cv2.GaussianBlur(parts[k], (0, 0), sigmaX=sigma_cols, sigmaY=sigma_rows)
    magnitude = sum(np.hypot(parts[2 * k], parts[2 * k + 1]) for k in range(looks))
    return magnitude / magnitude.mean()


def ellipse_rho(
    x: np.ndarray, y: np.ndarray, cx: float, cy: float, a: float, b: float, angle: float
) -> np.ndarray:
    """Normalised elliptic radius of points (1 on the boundary; `a` along `angle` in radians)."""
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - cx, y - cy
    u = dx * c + dy * s
    v = dy * c - dx * s
    return np.sqrt((u / a) ** 2 + (v / b) ** 2)


def grid(shape: tuple[int, int], step_rows: float, step_cols: float) -> tuple[np.ndarray, np.ndarray]:
    """Broadcastable millimetre coordinates of pixel centres: (rows as (H,1), cols as (1,W))."""
    rows = (np.arange(shape[0], dtype=np.float32) * step_rows)[:, None]
    cols = (np.arange(shape[1], dtype=np.float32) * step_cols)[None, :]
    return rows, cols


def distance_mm(mask: np.ndarray, spacing_rows: float, spacing_cols: float, reach_mm: float) -> np.ndarray:
    """Distance in mm to `mask` (inf beyond `reach_mm` of its bounding box), computed on a crop for speed."""
    out = np.full(mask.shape, np.inf, dtype=np.float32)
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return out
    mr, mc = math.ceil(reach_mm / spacing_rows) + 1, math.ceil(reach_mm / spacing_cols) + 1
    r0, r1 = max(rows.min() - mr, 0), min(rows.max() + mr + 1, mask.shape[0])
    c0, c1 = max(cols.min() - mc, 0), min(cols.max() + mc + 1, mask.shape[1])
    crop = ~mask[r0:r1, c0:c1]
    out[r0:r1, c0:c1] = ndimage.distance_transform_edt(crop, sampling=(spacing_rows, spacing_cols))
    return out


def ramanujan_perimeter(a: float, b: float) -> float:
    """Ellipse perimeter from its semi-axes by Ramanujan's second approximation (as HC18 uses)."""
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1.0 + 3.0 * h / (10.0 + math.sqrt(4.0 - 3.0 * h)))


def write_cfg(path: Path, items: dict[str, object]) -> None:
    """Write a `key: value` file like the releases' Info.cfg (LF endings, final newline)."""
    path.write_bytes("".join(f"{key}: {value}\n" for key, value in items.items()).encode("ascii"))
