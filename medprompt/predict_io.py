"""`medprompt predict`: route each input (dataset folder or raw image file) and write its outputs.

A preprocessed dataset gives `predictions.h5` (`mask` [N,H,W], the target's label
value where predicted) with its `manifest.csv`, plus one volume per case in the
source geometry when the manifest records it. A raw file goes through the run's
own preprocessing and comes back in its own geometry and format.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import pandas as pd
import torch

from medprompt.atomic import atomic_path
from medprompt.boxes import boxes_from_dataset
from medprompt.dataset import MANIFEST, PreprocessedDataset
from medprompt.device import default_batch_size
from medprompt.errors import MedpromptError
from medprompt.prediction import box_prompted_dataset, segment_dataset, segment_images
from medprompt.run_dir import TrainedModel, load_trained

PREDICTIONS = "predictions.h5"


def write_predictions(out_dir: Path, manifest: pd.DataFrame, masks: np.ndarray, attrs: dict) -> Path:
    """`predictions.h5` + `manifest.csv` for predicted slices, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / PREDICTIONS) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("mask", data=masks, chunks=(1, *masks.shape[1:]), compression="gzip", compression_opts=1)
            f.attrs.update(attrs)
    with atomic_path(out_dir / MANIFEST) as tmp:
        manifest.to_csv(tmp, index=False)
    return out_dir / PREDICTIONS


def read_predictions(pred_dir: Path) -> tuple[pd.DataFrame, np.ndarray, int]:
    """The manifest rows, masks and target label that `write_predictions` wrote."""
    path = Path(pred_dir) / PREDICTIONS
    try:
        with h5py.File(path, "r") as f:
            masks, label = f["mask"][:], int(f.attrs["target_label"])
    except (OSError, KeyError) as exc:
        raise MedpromptError(f"{path}: not a predictions file written by `medprompt predict` ({exc})") from None
    manifest = pd.read_csv(Path(pred_dir) / MANIFEST, dtype={"slice_id": str, "case": str, "frame": str})
    return manifest, masks, label


def has_source_geometry(manifest: pd.DataFrame) -> bool:
    """Whether the manifest records how to map slices back to source files."""
    return "source_image" in manifest.columns and manifest.source_image.notna().all()


def predict_dataset(model: TrainedModel, dataset_dir: Path, out_dir: Path, splits: Sequence[str] | None = None,
                    batch_size: int = 8, box_prompt: bool = False, progress: bool = True) -> list[Path]:
    """Predict the slices of a preprocessed dataset (all, or those of `splits`); reconstruct volumes when possible."""
    dataset = PreprocessedDataset(dataset_dir)
    rows = dataset.rows() if splits is None else np.flatnonzero(dataset.manifest.split.isin(list(splits)).to_numpy())
    if len(rows) == 0:
        raise MedpromptError(f"{dataset.manifest_path}: no slice in split {list(splits or [])}")
    label = int(model.config["dataset"]["target_label"])
    if box_prompt:
        boxes = boxes_from_dataset(dataset, rows, label)
        probs = box_prompted_dataset(model.backbone, dataset, rows, boxes, batch_size, progress)
    else:
        probs = segment_dataset(model.backbone, model.learner, dataset, rows, batch_size, progress)
    masks = ((probs > 0.5) * label).astype(np.uint8)
    manifest = dataset.manifest.iloc[rows].reset_index(drop=True)
    attrs = {"target_label": label, "dataset_fingerprint": dataset.fingerprint, "box_prompt": int(box_prompt)}
    written = [write_predictions(out_dir, manifest, masks, attrs)]
    if has_source_geometry(manifest):
        from medprompt.reconstruct import reconstruct

        written += reconstruct(manifest, masks, out_dir, kind="label")
    return written


def predict_file(model: TrainedModel, path: Path, out_dir: Path, batch_size: int) -> list[Path]:
    """Predict one raw image file with the run's preprocessing; the output has the file's geometry and format."""
    from medprompt.reconstruct import reconstruct
    from preprocessing.pipeline import preprocess_input

    config = model.config["dataset"].get("preprocessing")
    if not config:
        raise MedpromptError(
            f"{path}: the run was trained on a dataset without a recorded preprocessing config, so raw files "
            "cannot be preprocessed the same way; give a preprocessed dataset folder instead"
        )
    manifest, images = preprocess_input(path, config)
    probs = segment_images(model.backbone, model.learner, images, batch_size)
    masks = ((probs > 0.5) * int(model.config["dataset"]["target_label"])).astype(np.uint8)
    return reconstruct(manifest, masks, out_dir, kind="label")


def predict_inputs(run_dir: str | os.PathLike, inputs: list[Path], out: str | os.PathLike, device: torch.device,
                   checkpoint: str | os.PathLike | None = None, split: str = "all", batch_size: int | None = None,
                   box_prompt: bool = False) -> list[Path]:
    """Predict every input; a dataset folder among several gets its own subfolder of `out`.

    `batch_size` defaults to the device's (`default_batch_size`).
    """
    out = Path(out)
    missing = [p for p in inputs if not Path(p).exists()]
    if missing:
        raise MedpromptError(f"{missing[0]}: input not found")
    model = load_trained(run_dir, device, checkpoint)
    batch_size = batch_size or default_batch_size(device)
    written: list[Path] = []
    for path in map(Path, inputs):
        if path.is_dir():
            target = out / path.name if len(inputs) > 1 else out
            written += predict_dataset(model, path, target, None if split == "all" else [split], batch_size, box_prompt)
        else:
            if box_prompt:
                raise MedpromptError(f"{path}: --box-prompt needs a preprocessed dataset folder with masks")
            written += predict_file(model, path, out, batch_size)
    return written
