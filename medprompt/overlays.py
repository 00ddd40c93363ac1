"""Overlay pictures: a slice with its ground-truth and predicted contours, for a quick look."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from medprompt.atomic import atomic_path

TRUTH_BGR = (80, 220, 80)
PREDICTION_BGR = (40, 40, 240)
UPPER_BOUND_BGR = (0, 160, 255)


def overlay(image: np.ndarray, contours: list[tuple[np.ndarray, tuple[int, int, int]]], scale: int = 2) -> np.ndarray:
    """A grey uint8 slice as BGR, enlarged `scale` times, with each binary mask's outline in its colour."""
    picture = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_GRAY2BGR)
    picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    for mask, colour in contours:
        big = cv2.resize(mask.astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        outlines, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(picture, outlines, -1, colour, 1)
    return picture


def write_png(picture: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a picture atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        ok, encoded = cv2.imencode(".png", picture)
        if not ok:
            raise OSError(f"{path}: PNG encoding failed")
        tmp.write_bytes(encoded.tobytes())
    return path
