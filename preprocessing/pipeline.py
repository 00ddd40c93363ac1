"""Preprocess a raw dataset (ACDC, CAMUS, HC18, or a folder of your own images) into `slices.h5` + `manifest.csv`, or one unseen file for `predict`.

Manifest columns: the contract's `slice_id, dataset, case, split, frame,
slice_index, has_target`, plus `patient` (the split unit), `has_label` (a
ground-truth label map exists for the slice), `target_area` (target pixels in
the preprocessed slice), `source_image`, `source_label`, the slice geometry
(`medprompt.data.geometry.COLUMNS`) and the source file's geometry
(`medprompt.data.volume_io.META_COLUMNS`), which together let
`medprompt.inference.reconstruct` write any per-slice array back in the source grid.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

import numpy as np
import pandas as pd
from tqdm import tqdm

from medprompt.common.config_rules import Rule, check_config
from medprompt.common.errors import MedpromptError
from medprompt.common.locking import exclusive
from medprompt.common.output_paths import check_output_folder
from medprompt.data.dataset import MANIFEST, SLICES, SPLITS, write_dataset
from medprompt.data.geometry import COLUMNS as GEOMETRY_COLUMNS
from medprompt.data.volume_io import META_COLUMNS
from preprocessing import acdc, camus, folder, hc18
from preprocessing.cases import CaseSlices, RawCase, label_names, preprocess_case, target_label
from preprocessing.splits import assign_splits

PIPELINES: dict[str, ModuleType] = {"acdc": acdc, "camus": camus, "hc18": hc18, "folder": folder}
GROUND_TRUTH_LAYOUTS = tuple(m.GROUND_TRUTH for m in PIPELINES.values() if m.GROUND_TRUTH)  # for `evaluate`
MANIFEST_COLUMNS = (
    "slice_id",
    "dataset",
    "case",
    "patient",
    "split",
    "frame",
    "slice_index",
    "has_target",
    "has_label",
    "target_area",
    "source_image",
    "source_label",
    *GEOMETRY_COLUMNS,
    *META_COLUMNS,
)


INTERPOLATIONS = ("nearest", "linear", "cubic")
PREPROCESS_RULES = {
    "intensity.percentiles": Rule("numbers", 0, 100, length=2, increasing=True),
    "intensity.scope": Rule("choice", choices=("volume", "slice")),
    "geometry.target_spacing": Rule("numbers", 1e-6, length=2, nullable=True),
    "geometry.size": Rule("int", 16, 4096),
    "geometry.image_interpolation": Rule("choice", choices=INTERPOLATIONS),
    "geometry.label_interpolation": Rule("choice", choices=("nearest", "linear")),
    "splits.seed": Rule("int", 0),
    "splits.sizes": Rule("counts", 0, choices=SPLITS),
}


def pipeline_for(dataset: str) -> ModuleType:
    """The module that reads a dataset's raw layout."""
    if dataset not in PIPELINES:
        raise MedpromptError(f"unknown dataset {dataset!r}; choose one of {sorted(PIPELINES)}")
    return PIPELINES[dataset]


def preprocess(dataset: str, raw_dir: str | os.PathLike, out_dir: str | os.PathLike, config: dict,
               overwrite: bool = False) -> dict:
    """Preprocess the raw dataset at `raw_dir` into `out_dir` with a resolved config; return a summary dict.

    Cases that cannot be read are skipped and listed in the summary; the
    dataset is written only when complete. An existing dataset in `out_dir` is
    replaced only with `overwrite`.
    """
    module = pipeline_for(dataset)
    if config.get("dataset") != dataset:
        raise MedpromptError(f"config is for dataset {config.get('dataset')!r}, not {dataset!r}")
    check_config(config, {**PREPROCESS_RULES, **getattr(module, "RULES", {})})
    target_label(config)
    check_output_folder(out_dir, "OUT_DIR")
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise MedpromptError(f"{raw_dir}: raw dataset folder not found")
    existing = [Path(out_dir) / name for name in (MANIFEST, SLICES) if (Path(out_dir) / name).exists()]
    if existing and not overwrite:
        raise MedpromptError(f"{out_dir}: already holds a preprocessed dataset ({existing[0].name}); choose another "
                             "folder, or pass --overwrite to replace it")
    started = time.perf_counter()
    cases, skipped = module.find_cases(raw_dir, config)
    if not cases:
        reason = f"; e.g. {skipped[0]}" if skipped else ""
        raise MedpromptError(f"{raw_dir}: no {dataset} cases found{reason}")
    processed: list[tuple[RawCase, CaseSlices]] = []
    for raw in tqdm(cases, desc=f"preprocess {dataset}", unit="case"):
        try:
            processed.append((raw, preprocess_case(module.load_case(raw, config), config, split="")))
        except MedpromptError as exc:
            skipped.append(str(exc))
    if not processed:
        raise MedpromptError(f"{raw_dir}: none of the {len(cases)} {dataset} cases could be read; first: {skipped[0]}")
    manifest, images, masks = _assemble(processed, config)
    attrs = {
        "dataset": dataset,
        "target_label": target_label(config),
        "labels": label_names(config),
        "config": config,
    }
    with exclusive(out_dir, "medprompt preprocess"):
        write_dataset(out_dir, manifest, images, masks, attrs)
    seconds = time.perf_counter() - started
    return _summary(config, raw_dir, Path(out_dir), manifest, processed, skipped, seconds)


def preprocess_input(path: str | os.PathLike, config: dict) -> tuple[pd.DataFrame, np.ndarray]:
    """Preprocess one raw image file without labels exactly as the dataset pipeline would.

    Returns manifest rows (split 'test', has_target False) and uint8 images
    [n, S, S], ready for `predict` and then `medprompt.inference.reconstruct.reconstruct`.
    """
    module = pipeline_for(str(config.get("dataset")))
    raw = module.input_case(Path(path))
    loaded = module.load_case(raw, config)
    slices = preprocess_case(loaded, config, "test")
    return pd.DataFrame(slices.rows, columns=list(MANIFEST_COLUMNS)), slices.images


def format_summary(summary: Mapping[str, Any]) -> str:
    """A short human-readable report of a `preprocess` summary."""
    lines = [
        f"{summary['dataset']}: {summary['cases']} cases from {summary['patients']} patients in {summary['raw_dir']}"
        f" -> {summary['out_dir']} ({summary['seconds']:.1f} s, {summary['seconds_per_case']:.2f} s per case)",
        f"target: {summary['target']} (label {summary['target_label']})",
    ]
    for split in SPLITS:
        if summary["slices"].get(split):
            lines.append(
                f"  {split:5s}: {plural(summary['patients_per_split'][split], 'patient')}, "
                f"{plural(summary['cases_per_split'][split], 'case')}, "
                f"{plural(summary['slices'][split], 'slice')}, {summary['slices_with_target'][split]} with the target"
            )
        else:
            lines.append(f"  {split:5s}: empty (set its share with --set \"splits.sizes={{train: 6, val: 2, test: 4}}\")")
    origins = summary["split_origins"]
    for origin in dict.fromkeys(origins.values()):
        lines.append(f"  {', '.join(s for s in SPLITS if origins.get(s) == origin)}: {origin}")
    if summary["unlabelled_cases"]:
        lines.append(f"  {summary['unlabelled_cases']} cases have no label file (kept, has_label False)")
    if summary["cases_without_spacing"]:
        lines.append(f"  {summary['cases_without_spacing']} cases have no pixel spacing (distances will be in pixels)")
    if summary["target_cropped"]:
        worst = max(summary["target_cropped"].items(), key=lambda kv: kv[1])
        lines.append(
            f"  warning: the centre crop cuts target pixels in {len(summary['target_cropped'])} cases "
            f"(worst {worst[0]}: {worst[1]} source pixels); consider geometry.size or geometry.target_spacing"
        )
    if summary.get("unannotated_images"):
        lines.append(
            f"  {summary['unannotated_images']} images without annotation (e.g. the test set) are not included; "
            "predict them with `medprompt predict`"
        )
    if summary["skipped"]:
        lines.append(f"  skipped {len(summary['skipped'])}:")
        lines.extend(f"    {reason}" for reason in summary["skipped"])
    return "\n".join(lines)


def free_split_sizes(processed: list[tuple[RawCase, CaseSlices]], sizes: Mapping[str, int]) -> dict[str, int]:
    """The split sizes patients without an official split are shared by: the configured ones, less any split
    the raw layout already fills (ACDC's `testing/` folder)."""
    official = {raw.split for raw, _ in processed if raw.split is not None}
    return {split: count for split, count in sizes.items() if split not in official}


def split_origins(processed: list[tuple[RawCase, CaseSlices]], config: Mapping[str, Any]) -> dict[str, str]:
    """How each split was made, for the summary."""
    official = {raw.split for raw, _ in processed if raw.split is not None}
    sizes = free_split_sizes(processed, config["splits"]["sizes"])
    drawn = ", ".join(f"{k} {v}" for k, v in sizes.items())
    origins = {split: "the raw layout's own split" for split in official}
    for split in sizes:
        origins[split] = f"drawn by patient in proportion {drawn} (splits.seed {config['splits']['seed']})"
    return origins


def plural(count: int, noun: str) -> str:
    """'1 case', '2 cases'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _assemble(
    processed: list[tuple[RawCase, CaseSlices]], config: Mapping[str, Any]
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | None]:
    """Assign splits by patient and stack all cases into one manifest and image/mask arrays."""
    sizes, seed = free_split_sizes(processed, config["splits"]["sizes"]), int(config["splits"]["seed"])
    free = [raw.patient for raw, _ in processed if raw.split is None]
    assignment = assign_splits(free, sizes, seed) if free else {}
    rows = []
    for raw, slices in processed:
        split = raw.split or assignment[raw.patient]
        rows.extend({**row, "split": split} for row in slices.rows)
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    images = np.concatenate([s.images for _, s in processed])
    masks = None
    if any(s.masks is not None for _, s in processed):
        masks = np.concatenate([s.masks if s.masks is not None else np.zeros_like(s.images) for _, s in processed])
    return manifest, images, masks


def _summary(
    config: Mapping[str, Any],
    raw_dir: Path,
    out_dir: Path,
    manifest: pd.DataFrame,
    processed: list[tuple[RawCase, CaseSlices]],
    skipped: list[str],
    seconds: float,
) -> dict[str, Any]:
    """The counts `format_summary` reports."""
    cases = manifest.drop_duplicates("case")
    summary = {
        "dataset": config["dataset"],
        "target": config["target"],
        "target_label": target_label(config),
        "raw_dir": str(raw_dir),
        "out_dir": str(out_dir),
        "cases": len(cases),
        "patients": int(manifest.patient.nunique()),
        "cases_per_split": {s: int((cases.split == s).sum()) for s in SPLITS},
        "patients_per_split": {s: int(manifest.patient[manifest.split == s].nunique()) for s in SPLITS},
        "split_origins": split_origins(processed, config),
        "slices": {s: int((manifest.split == s).sum()) for s in SPLITS},
        "slices_with_target": {s: int((manifest.has_target & (manifest.split == s)).sum()) for s in SPLITS},
        "unlabelled_cases": int((~cases.has_label).sum()),
        "cases_without_spacing": int(cases.src_spacing_y.isna().sum()),
        "target_cropped": {raw.case: s.target_pixels_cropped for raw, s in processed if s.target_pixels_cropped},
        "skipped": list(skipped),
        "seconds": seconds,
        "seconds_per_case": seconds / max(1, len(cases)),
    }
    if config["dataset"] == "hc18":
        summary["unannotated_images"] = len(hc18.unannotated_images(raw_dir))
    return summary
