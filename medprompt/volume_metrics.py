"""Score predicted volumes against ground truth per case and structure: 3D Dice, HD95 and ASSD in mm, 2D per slice.

Distances use MONAI's surface distances with the ground truth's voxel spacing
(a one-slice file is scored in 2D with its pixel spacing). Conventions for
empty structures: both empty -> Dice 1 and no distance (NaN); one empty ->
Dice 0 and no distance. PNG files carry no spacing: it comes from the HC18
pixel-size CSV when one is given or found in GT_DIR or its parent, otherwise
distances are in pixels (column `units`). For HC18 the head circumference of
the ellipse fitted to the prediction is compared with the CSV's reference.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from tqdm import tqdm

from medprompt.config import load_config
from medprompt.errors import MedpromptError
from medprompt.ground_truth import GroundTruthLayout, image_files, index_ground_truth, read_label_map, recognise_dataset
from medprompt.head_circumference import head_circumference_mm, read_hc_table
from medprompt.metrics import dice, mean_std, monai_deprecations_silenced
from medprompt.volume_io import strip_suffix

CASE_COLUMNS = ("case", "structure", "label", "dice", "hd95_mm", "assd_mm", "gt_voxels", "pred_voxels", "units")
SLICE_COLUMNS = ("case", "slice_index", "structure", "label", "dice", "iou", "gt_pixels", "pred_pixels", "has_target")


def surface_distances(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...]) -> tuple[float, float]:
    """(HD95, ASSD) between two non-empty binary arrays, in the units of `spacing` (one value per axis)."""
    p = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float32))[None, None]
    g = torch.from_numpy(np.ascontiguousarray(gt, dtype=np.float32))[None, None]
    with monai_deprecations_silenced():
        hd95 = compute_hausdorff_distance(p, g, include_background=True, percentile=95, spacing=list(spacing))
        assd = compute_average_surface_distance(p, g, include_background=True, symmetric=True, spacing=list(spacing))
    return float(hd95.item()), float(assd.item())


def structure_scores(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...]) -> dict[str, float]:
    """Dice, HD95 and ASSD of one binary structure (singleton axes dropped, with their spacing)."""
    keep = [axis for axis, n in enumerate(gt.shape) if n > 1]
    pred, gt = pred.reshape([gt.shape[a] for a in keep]), gt.reshape([gt.shape[a] for a in keep])
    spacing = tuple(spacing[a] for a in keep)
    scores = {"dice": dice(pred, gt), "hd95_mm": math.nan, "assd_mm": math.nan}
    if pred.any() and gt.any():
        scores["hd95_mm"], scores["assd_mm"] = surface_distances(pred, gt, spacing)
    return scores


def slice_scores(case: str, pred: np.ndarray, gt: np.ndarray, label: int, name: str) -> list[dict]:
    """2D Dice/IoU of one structure on every slice where it is predicted or present."""
    rows = []
    for index, (p, g) in enumerate(zip(pred == label, gt == label)):
        gt_pixels, pred_pixels = int(g.sum()), int(p.sum())
        if gt_pixels == 0 and pred_pixels == 0:
            continue
        overlap = int(np.logical_and(p, g).sum())
        rows.append(
            {
                "case": case,
                "slice_index": index,
                "structure": name,
                "label": label,
                "dice": 2.0 * overlap / (gt_pixels + pred_pixels),
                "iou": overlap / (gt_pixels + pred_pixels - overlap),
                "gt_pixels": gt_pixels,
                "pred_pixels": pred_pixels,
                "has_target": gt_pixels > 0,
            }
        )
    return rows


def evaluate_volumes(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    labels: Mapping[int, str] | None = None,
    hc_csv: str | os.PathLike | None = None,
    only: set[str] | None = None,
    layouts: Sequence[GroundTruthLayout] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-case-per-structure 3D scores and per-slice 2D scores of the predictions in `pred_dir`.

    Predicted files are named after their case (`patient001_ED.nii.gz`) and
    matched to ground truth by `medprompt.ground_truth.index_ground_truth`.
    `labels` ({value: name}) chooses the structures; by default those
    predicted anywhere, named after the recognised dataset's config. The
    returned case table's `attrs` list unmatched files on either side. `only`
    (file names) restricts the predictions to what one `predict` wrote;
    `layouts` are the dataset adapters' ground-truth layouts.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise MedpromptError(f"{pred_dir}: prediction folder not found")
    predictions = {strip_suffix(p): p for p in image_files(pred_dir, recursive=False) if only is None or p.name in only}
    if not predictions:
        raise MedpromptError(f"{pred_dir}: no predicted files (.nii.gz, .mhd, .png) found")
    truths = index_ground_truth(gt_dir, layouts)
    matched = sorted(set(predictions) & set(truths))
    if not matched:
        raise MedpromptError(
            f"{pred_dir}: no predicted file matches a ground-truth case in {gt_dir} "
            f"(predictions e.g. {sorted(predictions)[:3]}, ground truth e.g. {sorted(truths)[:3]})"
        )
    structures = _structures(labels, matched, predictions, truths, layouts)
    hc_table = _hc_table(hc_csv, Path(gt_dir))
    case_rows, slice_rows = [], []
    for case in tqdm(matched, desc="evaluate", unit="case"):
        (pred, _), (gt, meta) = read_label_map(predictions[case]), read_label_map(truths[case], layouts)
        if pred.shape != gt.shape:
            raise MedpromptError(f"{predictions[case]}: shape {pred.shape} differs from ground truth {truths[case]} {gt.shape}")
        spacing, units = _spacing(meta, case, hc_table)
        for label, name in structures.items():
            scores = structure_scores(pred == label, gt == label, spacing)
            row = {"case": case, "structure": name, "label": label, **scores}
            row.update(gt_voxels=int((gt == label).sum()), pred_voxels=int((pred == label).sum()), units=units)
            if hc_table is not None and f"{case}.png" in hc_table.index:
                row.update(_hc_scores(pred == label, hc_table.loc[f"{case}.png"]))
            case_rows.append(row)
            slice_rows.extend(slice_scores(case, pred, gt, label, name))
    cases = pd.DataFrame(case_rows)
    cases.attrs["unmatched_predictions"] = sorted(set(predictions) - set(truths))
    cases.attrs["ground_truth_without_prediction"] = len(set(truths.values()) - {truths[c] for c in matched})
    return cases, pd.DataFrame(slice_rows, columns=list(SLICE_COLUMNS))


def format_volume_summary(df: pd.DataFrame, slices: pd.DataFrame | None = None) -> str:
    """Mean +- std per structure of the 3D scores (and of the 2D Dice on slices with the target, if given)."""
    lines = []
    for name, group in df.groupby("structure", sort=False):
        units = "mm" if (group["units"] == "mm").all() else "px"
        line = (
            f"{name}: {len(group)} cases, Dice {mean_std(group.dice, 4)} (min {group.dice.min():.4f}), "
            f"HD95 {mean_std(group.hd95_mm, 4)} {units}, ASSD {mean_std(group.assd_mm, 4)} {units}"
        )
        if slices is not None and len(slices):
            on_target = slices[(slices.structure == name) & slices.has_target]
            line += f", 2D Dice {mean_std(on_target.dice, 4)} ({len(on_target)} slices)"
        if "hc_error_mm" in group:
            line += f", HC error {mean_std(group.hc_error_mm, 4)} mm"
        lines.append(line)
    unmatched = df.attrs.get("unmatched_predictions") or []
    if unmatched:
        lines.append(f"{len(unmatched)} predictions without ground truth (e.g. {unmatched[0]!r}) were not scored")
    return "\n".join(lines)


def _structures(
    labels: Mapping[int, str] | None, matched: list[str], predictions: dict[str, Path], truths: dict[str, Path],
    layouts: Sequence[GroundTruthLayout],
) -> dict[int, str]:
    """The structures to score: given, or every label value predicted (else present in the truth), named by dataset."""
    if labels is not None:
        return {int(k): str(v) for k, v in labels.items()}

    def values(paths: list[Path]) -> list[int]:
        return sorted(set().union(*(np.unique(read_label_map(p, layouts)[0]).tolist() for p in paths)) - {0})

    predicted = values([predictions[c] for c in matched]) or values([truths[c] for c in matched])
    dataset = recognise_dataset(matched, layouts)
    names = {int(k): str(v) for k, v in load_config(dataset)["labels"].items()} if dataset else {}
    return {v: names.get(v, f"label_{v}") for v in predicted}


def _hc_table(hc_csv, gt_dir: Path) -> pd.DataFrame | None:
    """The HC18 pixel-size table: the given CSV, else any `*pixel_size*.csv` in GT_DIR or its parent."""
    if hc_csv is not None:
        return read_hc_table(hc_csv)
    found = sorted({*gt_dir.glob("*pixel_size*.csv"), *gt_dir.parent.glob("*pixel_size*.csv")})
    return pd.concat([read_hc_table(p) for p in found]) if found else None


def _spacing(meta, case: str, hc_table: pd.DataFrame | None) -> tuple[tuple[float, ...], str]:
    """Voxel spacing in array order and its units; PNG pixel size from the HC18 table."""
    if meta.format != ".png":
        return (1.0, *meta.zyx_spacing) if len(meta.zyx_spacing) == 2 else meta.zyx_spacing, "mm"
    if hc_table is not None and f"{case}.png" in hc_table.index:
        size = float(hc_table.loc[f"{case}.png", "pixel_size_mm"])
        return (1.0, size, size), "mm"
    return (1.0, 1.0, 1.0), "px"


def _hc_scores(mask: np.ndarray, reference: pd.Series) -> dict[str, float]:
    """Predicted head circumference and its absolute error against the CSV's reference (mm)."""
    predicted = head_circumference_mm(mask[0], float(reference["pixel_size_mm"]))
    ref = float(reference["hc_mm"]) if "hc_mm" in reference else math.nan
    return {"hc_pred_mm": predicted, "hc_ref_mm": ref, "hc_error_mm": abs(predicted - ref)}
