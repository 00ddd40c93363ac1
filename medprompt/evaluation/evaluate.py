"""`medprompt evaluate`: scores of predictions against ground truth, in one place.

Two kinds of prediction folders:
- `predict` on a preprocessed dataset (`predictions.h5`) scored on that dataset:
  one row per slice, Dice, IoU and HD95 (mm when the manifest has pixel spacing);
- volumes (`.nii.gz`, `.mhd`, `.png`) scored against ground-truth files: per case
  and structure 3D Dice, HD95 and ASSD with the ground truth's voxel spacing (a
  one-slice file in 2D with its pixel spacing), plus 2D Dice per slice. Files
  without a spacing (PNG) take it from the dataset's reference file when its
  adapter has one (HC18's pixel-size CSV), else distances are in pixels (column
  `units`). The scores and the empty-mask rule are `medprompt.evaluation.metrics`'.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from medprompt.common.atomic import atomic_path
from medprompt.common.config import load_config
from medprompt.common.errors import MedpromptError
from medprompt.common.output_paths import check_output_file
from medprompt.data.dataset import MANIFEST, PreprocessedDataset
from medprompt.data.volume_io import strip_suffix
from medprompt.evaluation.ground_truth import (
    CaseReference,
    GroundTruthLayout,
    image_files,
    index_ground_truth,
    read_label_map,
    recognise_dataset,
)
from medprompt.evaluation.metrics import mean_std, slice_scores, structure_scores, summary_line
from medprompt.inference.store import PREDICTIONS, completed_outputs, read_predictions

SPACING_COLUMNS = ("res_spacing_y", "res_spacing_x")  # pixel spacing of the preprocessed slice (mm)
SLICE_COLUMNS = ("case", "slice_index", "structure", "label", "dice", "iou", "gt_pixels", "pred_pixels", "has_target")


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
    if pred.shape[1:] != dataset.shape[1:]:
        raise MedpromptError(f"{pred_dir}: its slices are {pred.shape[1]}x{pred.shape[2]} pixels, those of "
                             f"{dataset.slices_path} {dataset.shape[1]}x{dataset.shape[2]}; evaluate predictions "
                             "against the dataset they were made from")
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
             reference_csv: str | os.PathLike | None = None, layouts: Sequence[GroundTruthLayout] = ()) -> str:
    """Score, write the CSV (and a summary CSV beside it), and return the printable summary.

    `layouts` are the dataset adapters' ground-truth layouts, for a raw download as GT_DIR;
    `reference_csv` a dataset's per-case reference file (HC18's pixel-size CSV).
    """
    pred_dir, gt_dir, out = Path(pred_dir), Path(gt_dir), Path(out)
    if not pred_dir.is_dir():
        raise MedpromptError(f"{pred_dir}: prediction folder not found")
    check_output_file(out, "--out")
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
    volumes, slices = evaluate_volumes(pred_dir, gt_dir, reference_csv=reference_csv, only=outputs, layouts=layouts)
    with atomic_path(out) as tmp:
        volumes.to_csv(tmp, index=False)
    slices_out = out.with_name(out.stem + "_slices.csv")
    with atomic_path(slices_out) as tmp:
        slices.to_csv(tmp, index=False)
    return f"{volumes.case.nunique()} cases scored -> {out} (per slice: {slices_out})\n" + format_volume_summary(volumes, slices)


def evaluate_volumes(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    labels: Mapping[int, str] | None = None,
    reference_csv: str | os.PathLike | None = None,
    only: set[str] | None = None,
    layouts: Sequence[GroundTruthLayout] = (),
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-case-per-structure 3D scores and per-slice 2D scores of the predictions in `pred_dir`.

    Predicted files are named after their case (`patient001_ED.nii.gz`) and
    matched to ground truth by `medprompt.evaluation.ground_truth.index_ground_truth`.
    `labels` ({value: name}) chooses the structures; by default those
    predicted anywhere, named after the recognised dataset's config. The
    returned case table's `attrs` list unmatched files on either side. `only`
    (file names) restricts the predictions to what one `predict` wrote;
    `layouts` are the dataset adapters' ground-truth layouts; a layout's
    reference (from `reference_csv` or found beside GT_DIR) gives PNG pixel
    sizes and extra scores.
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
    reference = _reference(layouts, Path(gt_dir), reference_csv)
    case_rows, slice_rows = [], []
    for case in tqdm(matched, desc="evaluate", unit="case", disable=not progress):
        (pred, _), (gt, meta) = read_label_map(predictions[case]), read_label_map(truths[case], layouts)
        if pred.shape != gt.shape:
            raise MedpromptError(f"{predictions[case]}: shape {pred.shape} differs from ground truth {truths[case]} {gt.shape}")
        spacing, units = _spacing(meta, case, reference)
        for label, name in structures.items():
            scores = structure_scores(pred == label, gt == label, spacing)
            row = {"case": case, "structure": name, "label": label, **scores}
            row.update(gt_voxels=int((gt == label).sum()), pred_voxels=int((pred == label).sum()), units=units)
            if reference is not None:
                row.update(reference.scores(case, pred == label))
            case_rows.append(row)
            slice_rows.append(_slice_rows(case, pred == label, gt == label, label, name))
    cases = pd.DataFrame(case_rows)
    cases.attrs["extra_columns"] = {} if reference is None else dict(reference.summary)
    cases.attrs["unmatched_predictions"] = sorted(set(predictions) - set(truths))
    cases.attrs["ground_truth_without_prediction"] = len(set(truths.values()) - {truths[c] for c in matched})
    return cases, pd.concat(slice_rows, ignore_index=True)[list(SLICE_COLUMNS)]


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
        for column, title in df.attrs.get("extra_columns", {}).items():
            if column in group:
                line += f", {title} {mean_std(group[column], 4)} mm"
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


def _reference(layouts: Sequence[GroundTruthLayout], gt_dir: Path, csv: str | os.PathLike | None) -> CaseReference | None:
    """The first reference a layout finds for GT_DIR (or reads from the given CSV)."""
    for layout in layouts:
        if layout.reference is not None:
            found = layout.reference(gt_dir, None if csv is None else Path(csv))
            if found is not None:
                return found
    if csv is not None:
        raise MedpromptError(f"--reference {csv}: no dataset adapter reads this kind of reference file")
    return None


def _spacing(meta, case: str, reference: CaseReference | None) -> tuple[tuple[float, ...], str]:
    """Voxel spacing in array order and its units; a PNG's pixel size from the dataset's reference."""
    if meta.format != ".png":
        return (1.0, *meta.zyx_spacing) if len(meta.zyx_spacing) == 2 else meta.zyx_spacing, "mm"
    size = reference.pixel_size(case) if reference is not None else None
    return ((1.0, size, size), "mm") if size is not None else ((1.0, 1.0, 1.0), "px")


def _slice_rows(case: str, pred: np.ndarray, gt: np.ndarray, label: int, name: str) -> pd.DataFrame:
    """2D Dice/IoU of one structure on every slice where it is predicted or present."""
    gt_pixels, pred_pixels = gt.sum(axis=(1, 2)), pred.sum(axis=(1, 2))
    index = np.flatnonzero((gt_pixels > 0) | (pred_pixels > 0))
    table = slice_scores(pred[index], gt[index], distances=False)
    return table.assign(case=case, slice_index=index, structure=name, label=label, gt_pixels=gt_pixels[index],
                        pred_pixels=pred_pixels[index], has_target=gt_pixels[index] > 0)
