"""Turn per-slice arrays aligned with a manifest back into one file per case, in the source geometry and format.

NIfTI sources come back as `<case>.nii.gz` with the source's header (affine,
qform/sform, zooms) and shape; ITK sources (CAMUS .mhd) as `<case>.mhd` + `.raw`
with the source's size, spacing, origin and direction; PNG sources as
`<case>.png` at the source size. Labels are uint8 with their values as they
are, except in PNG where a single-class map (values 0/1) is written 0/255 so it
can be viewed (readers in this package map it back). Probabilities are float32
(NIfTI/ITK) or 0-255 for PNG. Slices of a case absent from the manifest come
back as background.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from tqdm import tqdm

from medprompt.common.errors import MedpromptError
from medprompt.common.output_paths import check_output_folder
from medprompt.data.dataset import MANIFEST, PreprocessedDataset, read_rows
from medprompt.data.geometry import SliceGeometry, inverse_labels, inverse_probabilities
from medprompt.data.volume_io import VolumeMeta, write_volume
from medprompt.inference.store import prediction_folder

KINDS = ("label", "prob")
PNG_LABEL_SCALE = 255


def reconstruct(manifest: pd.DataFrame, per_slice: np.ndarray, out_dir: str | os.PathLike, kind: str = "label",
                progress: bool = True) -> list[Path]:
    """Invert the preprocessing for every case in `manifest` and write one file per case into `out_dir`.

    `per_slice` is [N, S, S] with rows aligned with the manifest: label maps
    (kind 'label', per-class linear interpolation) or probabilities in [0, 1]
    (kind 'prob', linear). Returns the written paths, in manifest case order.
    """
    if kind not in KINDS:
        raise MedpromptError(f"unknown kind {kind!r}; choose one of {list(KINDS)}")
    if len(per_slice) != len(manifest):
        raise MedpromptError(f"per-slice array has {len(per_slice)} slices but the manifest has {len(manifest)} rows")
    out_dir = Path(out_dir)
    check_reconstructable(manifest)
    positions = manifest.reset_index(drop=True).groupby("case", sort=False).indices
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for case, rows in tqdm(positions.items(), desc="reconstruct", unit="case", total=len(positions),
                           disable=not progress):
        table = manifest.iloc[rows]
        meta = VolumeMeta.from_row(table.iloc[0])
        volume = _case_volume(table, per_slice[rows], meta, kind)
        written.append(write_volume(volume, meta, out_dir / output_name(f"{case}{meta.output_suffix}")))
    return written


def check_reconstructable(manifest: pd.DataFrame) -> None:
    """Refuse, before anything is written, a manifest whose slices cannot go back to their source files: case
    names that would not be plain file names, or the geometry columns missing."""
    for case in manifest.case.unique():
        output_name(case)
    if len(manifest):
        VolumeMeta.from_row(manifest.iloc[0])
        SliceGeometry.from_row(manifest.iloc[0])


def output_name(name: str) -> str:
    """A file name taken from a manifest, refused when it would leave the output folder (a path, `..`, hidden)."""
    text = str(name)
    if not text or text != Path(text).name or text.startswith(".") or "\\" in text or "\0" in text:
        raise MedpromptError(f"case name {text!r} in the manifest is not a plain file name; outputs are named after "
                             "their case and must stay in --out")
    return text


def reconstruct_dataset(dataset_dir: str | os.PathLike, array_spec: str, out_dir: str | os.PathLike) -> list[Path]:
    """Everything `medprompt reconstruct DATASET_DIR SLICES.h5[:ARRAY] --out OUT_DIR` does.

    The array (default `mask`) is aligned with the dataset's manifest row by
    row, or, for a subset (e.g. the test split's predictions), through a
    `slice_id` array in the same file or the `manifest.csv` beside it. Float
    arrays are written as probabilities.
    """
    check_output_folder(out_dir, "--out")
    dataset = PreprocessedDataset(dataset_dir)
    path, name = parse_array_spec(array_spec)
    per_slice, slice_ids = _read_array(path, name)
    if slice_ids is None:
        slice_ids = _ids_beside(path, dataset, len(per_slice))
    manifest = dataset.manifest
    if slice_ids is not None:
        unknown = [s for s in slice_ids if s not in dataset.index_of]
        if unknown:
            raise MedpromptError(f"{path}: slice_id {unknown[0]!r} is not in {dataset.manifest_path}")
        manifest = manifest.iloc[[dataset.index_of[s] for s in slice_ids]]
    elif len(per_slice) != len(manifest):
        raise MedpromptError(
            f"{path}:{name} has {len(per_slice)} slices but {dataset.manifest_path} has {len(manifest)} rows "
            "and there is no 'slice_id' array to align them"
        )
    kind = "prob" if np.issubdtype(per_slice.dtype, np.floating) else "label"
    check_reconstructable(manifest)  # before the folder is made
    with prediction_folder(Path(out_dir), "medprompt reconstruct") as written:
        written += reconstruct(manifest, per_slice, out_dir, kind)
    return written


def parse_array_spec(spec: str) -> tuple[Path, str]:
    """`file.h5[:array]` -> (path, array name; `mask` by default)."""
    head, sep, tail = spec.rpartition(":")
    if sep and tail and "/" not in tail and "\\" not in tail and head.lower().endswith((".h5", ".hdf5")):
        return Path(head), tail
    return Path(spec), "mask"


def _read_array(path: Path, name: str) -> tuple[np.ndarray, list[str] | None]:
    if not path.is_file():
        raise MedpromptError(f"{path}: file not found")
    try:
        with h5py.File(path, "r") as f:
            if name not in f:
                raise MedpromptError(f"{path}: no array {name!r}; it has {sorted(f.keys())}")
            data = f[name]
            if data.ndim != 3:
                raise MedpromptError(f"{path}:{name} must be [N,H,W], got shape {data.shape}")
            array = read_rows(data, np.arange(data.shape[0]))
            ids = [s.decode() if isinstance(s, bytes) else str(s) for s in f["slice_id"][:]] if "slice_id" in f else None
    except OSError as exc:
        raise MedpromptError(f"{path}: cannot be read as HDF5 ({exc})") from None
    if ids is not None and len(ids) != len(array):
        raise MedpromptError(f"{path}: 'slice_id' has {len(ids)} entries but {name!r} has {len(array)} slices")
    return array, ids


def _ids_beside(path: Path, dataset: PreprocessedDataset, n: int) -> list[str] | None:
    """Slice ids from a `manifest.csv` beside the array file (not the dataset's own), when its rows match."""
    beside = path.parent / MANIFEST
    if not beside.is_file() or beside.resolve() == dataset.manifest_path.resolve():
        return None
    try:
        ids = pd.read_csv(beside, usecols=["slice_id"], dtype={"slice_id": str}).slice_id.tolist()
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        raise MedpromptError(f"{beside}: no readable 'slice_id' column to align {path.name} with") from None
    if len(ids) != n:
        raise MedpromptError(f"{beside}: {len(ids)} rows but {path.name} has {n} slices")
    return ids


def _case_volume(table: pd.DataFrame, slices: np.ndarray, meta: VolumeMeta, kind: str) -> np.ndarray:
    """One case's slices mapped back onto the source grid, in the dtype its file gets."""
    dtype = np.uint8 if kind == "label" else np.float32
    volume = np.zeros((meta.n_slices, *meta.slice_shape), dtype=dtype)
    for (_, row), data in zip(table.iterrows(), slices):
        index = int(row["slice_index"])
        if not 0 <= index < meta.n_slices:
            raise MedpromptError(f"case {row['case']!r}: slice_index {index} outside the source's {meta.n_slices} slices")
        geometry = SliceGeometry.from_row(row)
        volume[index] = inverse_labels(data, geometry) if kind == "label" else inverse_probabilities(data, geometry)
    if meta.format == ".png":
        return _png_values(volume, kind)
    return volume


def _png_values(volume: np.ndarray, kind: str) -> np.ndarray:
    """PNG holds uint8: single-class labels as 0/255, probabilities as 0-255."""
    if kind == "prob":
        return np.rint(volume * 255).astype(np.uint8)
    return volume * PNG_LABEL_SCALE if volume.max(initial=0) <= 1 else volume
