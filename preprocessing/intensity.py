"""Intensity normalisation of the paper: clip to the 0.5 / 99.5 percentiles and rescale to [0, 255]."""

from __future__ import annotations

import numpy as np

from medprompt.common.errors import MedpromptError


def check_finite(array: np.ndarray, source: str) -> None:
    """Refuse NaN or infinite intensities, naming the file they come from."""
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int(np.size(array) - np.isfinite(array).sum())
        raise MedpromptError(f"{source}: {bad} NaN or infinite intensities")


def clip_and_rescale(array: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """Clip to the given percentiles of `array` and map that range linearly to [0, 255] (float32).

    A constant array maps to 0.
    """
    low, high = np.percentile(np.asarray(array, dtype=np.float64), percentiles)
    if high <= low:
        return np.zeros(array.shape, dtype=np.float32)
    scaled = (np.clip(array, low, high) - low) * (255.0 / (high - low))
    return scaled.astype(np.float32)


def normalise(volume: np.ndarray, scope: str, percentiles: tuple[float, float]) -> np.ndarray:
    """Normalise a [slices, rows, cols] volume per 3D volume (`scope='volume'`) or per 2D slice (`'slice'`)."""
    if scope == "volume":
        return clip_and_rescale(volume, percentiles)
    if scope == "slice":
        return np.stack([clip_and_rescale(s, percentiles) for s in volume])
    raise MedpromptError(f"unknown intensity scope {scope!r}; choose 'volume' or 'slice'")


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Round float intensities in [0, 255] to uint8 (interpolation overshoot clipped)."""
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)
