"""Which predicted volumes a user should look at first, from the masks alone (no ground truth).

A learned prompt fails in recognisable ways on a volume: blobs on slices apart
from the structure (which the volume step then removes: a large removed share
means the first masks were scattered), a structure missing on a slice between
two that have it, or no mask at all. `quality.csv`, written beside the
predictions, has one row per case with these signals and a `review` column
naming what to check; an empty `review` means none was seen, not that the mask
is right (a mask of the wrong, consistent structure passes). Per slice,
`slice_signals` gives the columns added to a prediction's `manifest.csv`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medprompt.common.atomic import atomic_path

QUALITY = "quality.csv"
REMOVED_TO_REVIEW = 0.1  # the volume step removed at least this share of a case's predicted pixels
COLUMNS = ["case", "slices", "slices_with_mask", "mask_pixels", "gap_slices", "removed_fraction", "decoder_iou",
           "review"]


def slice_signals(before: np.ndarray, after: np.ndarray, decoder_iou: np.ndarray | None = None) -> pd.DataFrame:
    """Per slice, from its masks [N,H,W] before and after the volume step (the same masks when there is none):
    `mask_pixels` (kept), `box_fill` (their share of their tight box: near 1 for a blob, low for a crescent or
    scattered pieces; empty without a mask), `removed_pixels` (what the volume step removed on the slice) and
    `decoder_iou` (the mask decoder's own IoU estimate of the box-prompted pass's mask; empty where none ran)."""
    before, after = before > 0, after > 0
    areas = after.reshape(len(after), -1).sum(1)
    fill = np.full(len(after), np.nan)
    for i in np.flatnonzero(areas):
        rows, cols = np.flatnonzero(after[i].any(1)), np.flatnonzero(after[i].any(0))
        fill[i] = areas[i] / ((rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1))
    removed = before.reshape(len(before), -1).sum(1) - areas
    estimates = np.full(len(after), np.nan) if decoder_iou is None else np.asarray(decoder_iou, np.float64)
    return pd.DataFrame({"mask_pixels": areas, "box_fill": fill.round(4), "removed_pixels": removed,
                         "decoder_iou": estimates.round(4)})


def case_quality(slice_index: np.ndarray, areas: np.ndarray, removed_pixels: np.ndarray,
                 decoder_iou: np.ndarray) -> dict:
    """The signals of one case from its slices' positions, kept mask pixels, pixels the volume step removed and
    the decoder's IoU estimates (their mean over the slices with a mask: a low one ranks the case first)."""
    estimates = decoder_iou[areas > 0]
    mean_iou = round(float(np.nanmean(estimates)), 4) if np.isfinite(estimates).any() else np.nan
    order = np.argsort(slice_index)
    positions, areas = slice_index[order], areas[order]
    masked = np.flatnonzero(areas)
    span = slice(masked[0], masked[-1]) if len(masked) else slice(0, 0)
    gaps = [int(i) for i in positions[span][areas[span] == 0]]
    predicted = int(areas.sum() + removed_pixels.sum())
    removed = int(removed_pixels.sum()) / predicted if predicted else 0.0
    reasons = []
    if not len(masked):
        reasons.append("no mask on any slice")
    if gaps:
        reasons.append(f"no mask on slice(s) {', '.join(map(str, gaps))} between masked slices")
    if removed >= REMOVED_TO_REVIEW:
        reasons.append(f"the volume step removed {removed:.0%} of the predicted pixels (blobs apart from the "
                       "structure)")
    return {"slices": len(positions), "slices_with_mask": len(masked), "mask_pixels": int(areas.sum()),
            "gap_slices": len(gaps), "removed_fraction": round(removed, 4), "decoder_iou": mean_iou,
            "review": "; ".join(reasons)}


def quality_table(manifest: pd.DataFrame, signals: pd.DataFrame) -> pd.DataFrame:
    """One row per case of the manifest's rows, from their `slice_signals`."""
    positions = manifest.slice_index.to_numpy().astype(int)
    areas, removed = signals.mask_pixels.to_numpy(), signals.removed_pixels.to_numpy()
    estimates = signals.decoder_iou.to_numpy()
    rows = [{"case": case, **case_quality(positions[index], areas[index], removed[index], estimates[index])}
            for case, index in manifest.reset_index(drop=True).groupby("case", sort=False).indices.items()]
    return pd.DataFrame(rows, columns=COLUMNS)


def write_quality(out_dir: Path, table: pd.DataFrame) -> Path:
    """`quality.csv` in `out_dir`, written atomically."""
    with atomic_path(out_dir / QUALITY) as tmp:
        table.to_csv(tmp, index=False)
    return out_dir / QUALITY


def review_line(table: pd.DataFrame) -> str:
    """`2 of 27 cases to review (quality.csv)`, or that none was flagged."""
    flagged = int((table.review.fillna("") != "").sum())
    return f"{flagged} of {len(table)} cases to review ({QUALITY})" if flagged else \
        f"no case flagged for review among {len(table)} ({QUALITY})"
