"""`medprompt predict`: check every input up front, then route each (dataset folder or raw image file).

A preprocessed dataset is predicted by `medprompt.inference.segment.predict_dataset`
(`predictions.h5` plus volumes in the source geometry). A raw file (or a DICOM
series folder) goes through the run's own preprocessing and comes back in its own
geometry and format (NIfTI for a series; with `output_format="dicom-seg"` also a
DICOM SEG over the series).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from medprompt.common.device import default_batch_size
from medprompt.common.distributed import Group
from medprompt.common.errors import MedpromptError
from medprompt.common.output_paths import check_output_folder
from medprompt.data.dataset import MANIFEST, read_manifest, source_kinds
from medprompt.data.dicom_series import is_dicom_series
from medprompt.data.volume_io import read_volume
from medprompt.inference.dicom_seg import SEG_SUFFIX, write_seg
from medprompt.inference.quality import quality_table, slice_signals, write_quality
from medprompt.inference.reconstruct import check_reconstructable, reconstruct
from medprompt.inference.segment import label_masks, predict_dataset, segment_images
from medprompt.inference.store import has_source_geometry, prediction_folder
from medprompt.methods import method_class
from medprompt.methods.orientations import check_orientations
from medprompt.methods.run_dir import TrainedModel, finished_run_config, load_trained, target_name

OUTPUT_FORMATS = ("nifti", "dicom-seg")
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
    check_reconstructable(manifest)
    warn_if_unlike(path, manifest, run_config)
    return manifest, images


SMALLEST_SIDE = 32  # source pixels: a slice smaller than this across holds too little to segment


def warn_if_unlike(path: Path, manifest: pd.DataFrame, run_config: dict) -> None:
    """One-line warnings for an input unlike what the run was trained on (another kind of image: a 2D PNG
    through a run on MRI volumes), or too small to hold a structure; the input is still predicted."""
    trained = run_config["dataset"].get("source_kinds") or []
    kinds = source_kinds(manifest)
    if trained and kinds and not set(kinds) & set(trained):
        warnings.warn(f"{path}: a {', '.join(kinds)} file, but the run was trained on {', '.join(trained)} files "
                      f"({run_config['dataset'].get('name')}); predicting it anyway, check it is the same kind of image")
    smallest = int(min(manifest.src_height.min(), manifest.src_width.min())) if "src_height" in manifest else None
    if smallest is not None and smallest < SMALLEST_SIDE:
        warnings.warn(f"{path}: slices of {int(manifest.src_height.iloc[0])}x{int(manifest.src_width.iloc[0])} "
                      "pixels; too small to hold a structure, the prediction will mean little")


def predict_prepared(model: TrainedModel, manifest: pd.DataFrame, images: np.ndarray, out_dir: Path,
                     batch_size: int) -> tuple[list[Path], pd.DataFrame]:
    """Segment a prepared file's slices; the outputs (the file's geometry and format) and its quality row."""
    segmented = segment_images(model.method, images, batch_size, refine_config=model.refine,
                               orientations=model.orientations)
    foreground = segmented.probs > 0.5
    masks = label_masks(model, manifest, foreground)
    signals = slice_signals(foreground, masks, segmented.decoder_iou)
    return reconstruct(manifest, masks, out_dir, kind="label"), quality_table(manifest, signals)


def write_dicom_seg(series: Path, nifti: Path, run_config: dict) -> Path:
    """The prediction `nifti` of a DICOM series, written beside it as a DICOM SEG over the series' instances."""
    mask = read_volume(nifti)[0]
    return write_seg(mask, series, nifti.parent / f"{series.name}{SEG_SUFFIX}", target_name(run_config),
                     run_config["train"]["method"])


def check_output_format(output_format: str, inputs: Sequence[Path]) -> None:
    """Refuse, before any model loads, a format an input cannot be written in (a DICOM SEG needs its series)."""
    if output_format not in OUTPUT_FORMATS:
        raise MedpromptError(f"--format {output_format}: unknown; choose one of {list(OUTPUT_FORMATS)}")
    if output_format == "dicom-seg":
        for path in inputs:
            if not is_dicom_series(path):
                raise MedpromptError(f"--format dicom-seg: {path} is not a DICOM series folder; a DICOM SEG refers "
                                     "to the series it was predicted from")


def is_dataset_folder(path: Path) -> bool:
    """Whether an input is a preprocessed dataset folder (a folder that is not a DICOM series)."""
    return path.is_dir() and not is_dicom_series(path)


def check_inputs(inputs: Sequence[Path], out: Path, splits: Sequence[str] | None) -> None:
    """Refuse, before any model loads, inputs that are missing, datasets without the split, and an --out that
    would write over an input (outputs are named after their inputs)."""
    check_output_folder(out, "--out")
    for path in map(Path, inputs):
        if not path.exists():
            raise MedpromptError(f"{path}: input not found")
        folder = path if path.is_dir() else path.parent
        if out.resolve() == folder.resolve() or (path.is_dir() and path.resolve() in out.resolve().parents):
            raise MedpromptError(f"--out {out}: is the folder of the input {path} (or inside it), whose files the outputs "
                                 "would replace; choose another folder")
        if is_dataset_folder(path):
            check_dataset_input(path, splits)


def check_dataset_input(path: Path, splits: Sequence[str] | None) -> None:
    """A dataset folder's manifest alone (no slice is read): it has slices in `splits`, and where it names source
    files, the columns that map predictions back to them."""
    if not (path / MANIFEST).is_file():
        raise MedpromptError(f"{path}: no {MANIFEST}; is this a preprocessed dataset (run `medprompt preprocess` "
                             "first)?")
    manifest = read_manifest(path / MANIFEST)
    if splits is not None:
        present = set(manifest.split)
        if not present & set(splits):
            raise MedpromptError(f"{path}: no slice in split {list(splits)} (its splits: {sorted(present)}); "
                                 "use --split all, or preprocess with a share for it, e.g. "
                                 "--set \"splits.sizes={train: 6, val: 2, test: 4}\"")
        manifest = manifest[manifest.split.isin(splits)]
    if has_source_geometry(manifest):
        try:
            check_reconstructable(manifest)
        except MedpromptError as exc:
            raise MedpromptError(f"{path / MANIFEST}: {exc}") from None


def predict_inputs(run_dir: str | os.PathLike, inputs: list[Path], out: str | os.PathLike, device: torch.device,
                   checkpoint: str | os.PathLike | None = None, split: str = "all", batch_size: int | None = None,
                   box_prompt: bool = False, refine: bool | None = None, prepare: Preparer | None = None,
                   orientations: str = "none", engine: str = "auto",
                   largest_component: bool | None = None, output_format: str = "nifti",
                   group: Group = Group()) -> list[Path]:
    """Predict every input; a dataset folder among several gets its own subfolder of `out`.

    `batch_size` defaults to the device's (`default_batch_size`); `refine` overrides the run's second-pass
    setting and `largest_component` its volume step; `prepare` preprocesses image-file inputs (see
    `prepare_file`); `orientations` averages the first pass over the slices in those orientations (each one
    encoded again); `engine` runs the encoder (`engines.ENGINE_CHOICES`); `output_format` `dicom-seg` adds a
    DICOM SEG beside each DICOM series' NIfTI. In a `group` of processes (torchrun) the members share out a
    dataset's slices and the files; the main member writes what is shared and returns the list.
    """
    out = Path(out)
    check_inputs(inputs, out, None if split == "all" else [split])
    check_output_format(output_format, list(map(Path, inputs)))
    folders, files = [], []
    for path in map(Path, inputs):
        (folders if is_dataset_folder(path) else files).append(path)
    if box_prompt and files:
        raise MedpromptError(f"{files[0]}: --box-prompt needs a preprocessed dataset folder with masks")
    run_config = finished_run_config(run_dir)
    if files and method_class(run_config["train"]["method"]).needs_boxes:
        raise MedpromptError(f"{files[0]}: the run's method {run_config['train']['method']} prompts with the true "
                             "boxes; give a preprocessed dataset folder with masks")
    mine = group.share(list(enumerate(files)))  # each member prepares and predicts its share of the files
    prepared = [prepare_file(path, run_config, prepare) for _, path in mine]
    for _, images in prepared:
        check_orientations(orientations, tuple(images.shape[1:]))  # before the model loads
    model = load_trained(run_dir, device, checkpoint, engine=engine)
    if refine is not None:
        model.refine = replace(model.refine, enabled=refine)
    if largest_component is not None:
        model.refine = replace(model.refine, largest_component=largest_component)
    model.orientations = orientations
    batch_size = batch_size or default_batch_size(device)
    written: list[Path] = []
    for path in folders:
        target = out / path.name if len(inputs) > 1 else out
        written += predict_dataset(model, path, target, None if split == "all" else [split], batch_size, box_prompt,
                                   group=group)
    if files:
        with group.main_holds(prediction_folder(out)) as from_files:
            predicted = []
            for (index, path), (manifest, images) in zip(mine, prepared):
                volumes, quality = predict_prepared(model, manifest, images, out, batch_size)
                if output_format == "dicom-seg":
                    volumes += [write_dicom_seg(path, volumes[0], run_config)]
                predicted.append((index, volumes, quality))
            in_order = sorted((part for member in group.gather(predicted) for part in member), key=lambda p: p[0])
            if group.is_main:
                from_files += [volume for _, volumes, _ in in_order for volume in volumes]
                from_files.append(write_quality(out, pd.concat([quality for _, _, quality in in_order])))
        written += from_files or []
    return written
