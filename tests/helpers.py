"""Helpers shared by the tests: where the real samples are, and an independent Dice."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

SHARED_DATA = Path(os.environ.get("MEDPROMPT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two binary masks (1 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)
