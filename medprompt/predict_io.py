"""`medprompt predict`: route each input (dataset folder or raw image file) and write its outputs.

A preprocessed dataset gives `predictions.h5` (`mask` [N,H,W], the target's label
value where predicted) with its `manifest.csv`, plus one volume per case in the
source geometry when the manifest records it. A raw file goes through the run's
own preprocessing and comes back in its own geometry and format.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import h5py
import numpy as np
import pandas as pd
import torch

from medprompt.atomic import atomic_path
from medprompt.boxes import boxes_from_dataset
from medprompt.dataset import MANIFEST, PreprocessedDataset, read_manifest
from medprompt.device import default_batch_size
from medprompt.errors import MedpromptError
from medprompt.locking import exclusive
from medprompt.prediction import box_prompted_dataset, segment_dataset, segment_images
from medprompt.reconstruct import check_output_names, reconstruct
from medprompt.run_dir import TrainedModel, finished_run_config, load_trained

PREDICTIONS = "predictions.h5"
RUNNING = ".predict_running"      # present while `predict` writes into a folder
OUTPUTS = "predict_outputs.txt"   # what the last complete `predict` into a folder wrote, one name per line


@contextlib.contextmanager
def prediction_folder(out_dir: Path) -> Iterator[list[Path]]:
    """Mark `out_dir` as being written for the block; the block appends what it writes, and only when it
    ends without error is that list published (and the mark cleared). A folder left marked was interrupted."""
    with exclusive(out_dir, "medprompt predict"):
        (out_dir / OUTPUTS).unlink(missing_ok=True)
        (out_dir / RUNNING).write_text(f"pid {os.getpid()}\n")
        written: list[Path] = []
        yield written
        with atomic_path(out_dir / OUTPUTS) as tmp:
            tmp.write_text("".join(f"{path.relative_to(out_dir)}\n" for path in written))
        (out_dir / RUNNING).unlink(missing_ok=True)


def completed_outputs(folder: Path) -> set[str] | None:
    """The files the last complete `predict` wrote into `folder`; None for a folder `predict` did not write.

    A folder whose `predict` was interrupted (or is still running) is refused.
    """
    if (folder / RUNNING).exists():
        raise MedpromptError(f"{folder}: a `medprompt predict` into this folder did not finish (or is still running); "
                             "predict again before evaluating")
    if not (folder / OUTPUTS).is_file():
        return None
    return {line for line in (folder / OUTPUTS).read_text().splitlines() if line}


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
    manifest_path = Path(pred_dir) / MANIFEST
    if not manifest_path.is_file():
        raise MedpromptError(f"{manifest_path}: missing; {path.name} cannot be matched to its slices without it")
    manifest = pd.read_csv(manifest_path, dtype={"slice_id": str, "case": str, "frame": str})
    if masks.ndim != 3 or len(masks) != len(manifest) or "slice_id" not in manifest.columns:
        raise MedpromptError(f"{path}: mask shape {masks.shape} does not match the {len(manifest)} rows of "
                             f"{manifest_path.name} (each row one [H,W] slice, with a slice_id)")
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
    manifest = dataset.manifest.iloc[rows].reset_index(drop=True)
    geometry = has_source_geometry(manifest)
    if geometry:
        check_output_names(manifest)
    if box_prompt:
        boxes = boxes_from_dataset(dataset, rows, label)
        probs = box_prompted_dataset(model.backbone, dataset, rows, boxes, batch_size, progress)
    else:
        probs = segment_dataset(model.backbone, model.learner, dataset, rows, batch_size, progress, model.refine)
    masks = ((probs > 0.5) * label).astype(np.uint8)
    attrs = {"target_label": label, "dataset_fingerprint": dataset.fingerprint, "box_prompt": int(box_prompt),
             "refined": int(model.refine.enabled and not box_prompt)}
    with prediction_folder(out_dir) as written:
        written.append(write_predictions(out_dir, manifest, masks, attrs))
        if geometry:
            written += reconstruct(manifest, masks, out_dir, kind="label")
    return written


Preparer = Callable[[Path, dict], tuple[pd.DataFrame, np.ndarray]]  # (file, preprocessing config) -> manifest, slices


def prepare_file(path: Path, run_config: dict, prepare: Preparer | None) -> tuple[pd.DataFrame, np.ndarray]:
    """One raw image file through the run's preprocessing (manifest rows, slices), refused before any model loads.

    `prepare` is the dataset adapters' preprocessing of one file (the command line passes it; the library
    does not know the datasets).
    """
    if prepare is None:
        raise MedpromptError(f"{path}: predicting an image file needs the dataset preprocessing; use `medprompt "
                             "predict` or pass preprocessing.pipeline.preprocess_input")
    config = run_config["dataset"].get("preprocessing")
    if not config:
        raise MedpromptError(
            f"{path}: the run was trained on a dataset without a recorded preprocessing config, so raw files "
            "cannot be preprocessed the same way; give a preprocessed dataset folder instead"
        )
    manifest, images = prepare(path, config)
    check_output_names(manifest)
    return manifest, images


def predict_prepared(model: TrainedModel, manifest: pd.DataFrame, images: np.ndarray, out_dir: Path,
                     batch_size: int) -> list[Path]:
    """Segment a prepared file's slices; the output has the file's geometry and format."""
    probs = segment_images(model.backbone, model.learner, images, batch_size, refine_config=model.refine)
    masks = ((probs > 0.5) * int(model.config["dataset"]["target_label"])).astype(np.uint8)
    return reconstruct(manifest, masks, out_dir, kind="label")


def check_inputs(inputs: Sequence[Path], out: Path, splits: Sequence[str] | None) -> None:
    """Refuse, before any model loads, inputs that are missing, datasets without the split, and an --out that
    would write over an input (outputs are named after their inputs)."""
    if out.exists() and not out.is_dir():
        raise MedpromptError(f"--out {out}: is a file; predict writes a folder there, choose another path")
    for path in map(Path, inputs):
        if not path.exists():
            raise MedpromptError(f"{path}: input not found")
        folder = path if path.is_dir() else path.parent
        if out.resolve() == folder.resolve() or (path.is_dir() and path.resolve() in out.resolve().parents):
            raise MedpromptError(f"--out {out}: is the folder of the input {path} (or inside it), whose files the outputs "
                                 "would replace; choose another folder")
        if path.is_dir() and splits is not None:
            if not (path / MANIFEST).is_file():
                raise MedpromptError(f"{path}: no {MANIFEST}; is this a preprocessed dataset (run `medprompt "
                                     "preprocess` first)?")
            present = set(read_manifest(path / MANIFEST).split)  # the manifest alone: no slice is read
            if not present & set(splits):
                raise MedpromptError(f"{path}: no slice in split {list(splits)} (its splits: {sorted(present)}); "
                                     "use --split all, or preprocess with a share for it, e.g. "
                                     "--set \"splits.sizes={train: 6, val: 2, test: 4}\"")


def predict_inputs(run_dir: str | os.PathLike, inputs: list[Path], out: str | os.PathLike, device: torch.device,
                   checkpoint: str | os.PathLike | None = None, split: str = "all", batch_size: int | None = None,
                   box_prompt: bool = False, refine: bool | None = None, prepare: Preparer | None = None) -> list[Path]:
    """Predict every input; a dataset folder among several gets its own subfolder of `out`.

    `batch_size` defaults to the device's (`default_batch_size`); `refine` overrides the run's second-pass
    setting; `prepare` preprocesses image-file inputs (see `prepare_file`).
    """
    out = Path(out)
    check_inputs(inputs, out, None if split == "all" else [split])
    folders, files = [p for p in map(Path, inputs) if p.is_dir()], [p for p in map(Path, inputs) if not p.is_dir()]
    if box_prompt and files:
        raise MedpromptError(f"{files[0]}: --box-prompt needs a preprocessed dataset folder with masks")
    run_config = finished_run_config(run_dir)
    prepared = [prepare_file(path, run_config, prepare) for path in files]
    model = load_trained(run_dir, device, checkpoint)
    if refine is not None:
        model.refine = replace(model.refine, enabled=refine)
    batch_size = batch_size or default_batch_size(device)
    written: list[Path] = []
    for path in folders:
        target = out / path.name if len(inputs) > 1 else out
        written += predict_dataset(model, path, target, None if split == "all" else [split], batch_size, box_prompt)
    if files:
        with prediction_folder(out) as from_files:
            for manifest, images in prepared:
                from_files += predict_prepared(model, manifest, images, out, batch_size)
        written += from_files
    return written
