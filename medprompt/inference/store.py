"""`predictions.h5` and the prediction folder it lives in: the one writer and reader of both.

`predictions.h5` holds `mask` [N,H,W] (the target's label value where predicted)
for the rows of the `manifest.csv` beside it. A folder being written carries a
mark until its outputs are complete; the list of what it holds is published last,
so an interrupted or mixed folder is never taken for a finished one.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import pandas as pd

from medprompt.common.atomic import atomic_path
from medprompt.common.errors import MedpromptError
from medprompt.common.locking import exclusive
from medprompt.data.dataset import MANIFEST

PREDICTIONS = "predictions.h5"
RUNNING = ".predict_running"      # present while `predict` (or `reconstruct`) writes into a folder
OUTPUTS = "predict_outputs.txt"   # what the last complete `predict` into a folder wrote, one name per line


@contextlib.contextmanager
def prediction_folder(out_dir: Path, writer: str = "medprompt predict") -> Iterator[list[Path]]:
    """Mark `out_dir` as being written by `writer` for the block; the block appends what it writes, and only
    when it ends without error is that list published (and the mark cleared). A folder left marked was
    interrupted."""
    with exclusive(out_dir, writer):
        (out_dir / OUTPUTS).unlink(missing_ok=True)
        (out_dir / RUNNING).write_text(f"`{writer}` (pid {os.getpid()})\n")
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
        writer = (folder / RUNNING).read_text().strip() or "`medprompt predict`"
        raise MedpromptError(f"{folder}: the {writer} that wrote this folder did not finish (or is still running); "
                             "run it again before evaluating")
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
