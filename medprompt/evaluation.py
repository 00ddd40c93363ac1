"""`medprompt evaluate`: per-slice scores of predictions on a dataset, or per-case 3D scores of volumes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from medprompt.atomic import atomic_path
from medprompt.dataset import MANIFEST, PreprocessedDataset
from medprompt.errors import MedpromptError
from medprompt.ground_truth import GroundTruthLayout
from medprompt.metrics import slice_scores, summary_line
from medprompt.predict_io import PREDICTIONS, completed_outputs, read_predictions

SPACING_COLUMNS = ("res_spacing_y", "res_spacing_x")  # pixel spacing of the preprocessed slice (mm)


def summary_path(out: Path) -> Path:
    """Where the mean / std table of a metrics CSV goes."""
    return out.with_name(out.stem + "_summary.csv")


def evaluate_slices(pred_dir: Path, dataset_dir: Path) -> pd.DataFrame:
    """One row per predicted slice: Dice, IoU, HD95 (mm when the manifest has pixel spacing, else pixels)."""
    manifest, pred, label = read_predictions(pred_dir)
    dataset = PreprocessedDataset(dataset_dir)
    unknown = [s for s in manifest.slice_id if s not in dataset.index_of]
    if unknown:
        raise MedpromptError(f"{pred_dir / MANIFEST}: slice {unknown[0]!r} is not in {dataset.manifest_path}")
    rows = np.array([dataset.index_of[s] for s in manifest.slice_id])
    gt = dataset.masks(rows) == label
    spacing = None
    if all(c in manifest.columns for c in SPACING_COLUMNS):
        spacing = manifest[list(SPACING_COLUMNS)].to_numpy(dtype=float)
        if not np.isfinite(spacing).all():
            spacing = None
    scores = slice_scores(pred == label, gt, spacing)
    keep = [c for c in ("slice_id", "case", "split", "frame", "slice_index") if c in manifest.columns]
    table = pd.concat([manifest[keep].reset_index(drop=True), scores], axis=1)
    table.insert(len(keep), "has_target", gt.reshape(len(gt), -1).any(1))
    table["hd95_unit"] = "mm" if spacing is not None else "px"
    return table


def evaluate(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, out: str | os.PathLike,
             hc_csv: str | os.PathLike | None = None, layouts: Sequence[GroundTruthLayout] = ()) -> str:
    """Score, write the CSV (and a summary CSV beside it), and return the printable summary.

    `layouts` are the dataset adapters' ground-truth layouts, for a raw download as GT_DIR.
    """
    pred_dir, gt_dir, out = Path(pred_dir), Path(gt_dir), Path(out)
    if not pred_dir.is_dir():
        raise MedpromptError(f"{pred_dir}: prediction folder not found")
    if out.is_dir():
        raise MedpromptError(f"--out {out}: is a folder; evaluate writes a CSV file there, choose another path")
    outputs = completed_outputs(pred_dir)
    if (pred_dir / PREDICTIONS).is_file() and (gt_dir / MANIFEST).is_file():
        table = evaluate_slices(pred_dir, gt_dir)
        with atomic_path(out) as tmp:
            table.to_csv(tmp, index=False)
        with_target = table[table.has_target]
        lines = [f"{len(table)} slices scored -> {out}",
                 f"all slices:         {summary_line(table)}",
                 f"slices with target: {summary_line(with_target)} ({len(with_target)} slices)"]
        with atomic_path(summary_path(out)) as tmp:
            pd.DataFrame({"subset": ["all", "with_target"],
                          **{f"{c}_{s}": [getattr(t[c], s)() for t in (table, with_target)]
                             for c in ("dice", "iou", "hd95") for s in ("mean", "std")}}).to_csv(tmp, index=False)
        return "\n".join(lines)
    from medprompt.volume_metrics import evaluate_volumes, format_volume_summary

    volumes, slices = evaluate_volumes(pred_dir, gt_dir, hc_csv=hc_csv, only=outputs, layouts=layouts)
    with atomic_path(out) as tmp:
        volumes.to_csv(tmp, index=False)
    slices_out = out.with_name(out.stem + "_slices.csv")
    with atomic_path(slices_out) as tmp:
        slices.to_csv(tmp, index=False)
    return f"{volumes.case.nunique()} cases scored -> {out} (per slice: {slices_out})\n" + format_volume_summary(volumes, slices)
