"""The preprocessed dataset contract: `manifest.csv` + `slices.h5` in one directory.

`manifest.csv` has one row per 2D slice; `slices.h5` holds `image` [N,H,W] uint8
and, where labels exist, `mask` [N,H,W] uint8 (the full label map), rows aligned
with the manifest. Attributes of `slices.h5` say which label is the target.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
import pandas as pd

from medprompt.common.atomic import atomic_path
from medprompt.common.errors import MedpromptError

MANIFEST = "manifest.csv"
SLICES = "slices.h5"
REQUIRED_COLUMNS = ("slice_id", "dataset", "case", "split", "frame", "slice_index", "has_target")
SPLITS = ("train", "val", "test")
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3


def image_fingerprint(images: np.ndarray) -> str:
    """sha256 of the image array's shape and bytes: identifies the preprocessing output."""
    digest = hashlib.sha256(str(images.shape).encode())
    for row in images:
        digest.update(np.ascontiguousarray(row).tobytes())
    return digest.hexdigest()


def write_dataset(
    out_dir: str | os.PathLike,
    manifest: pd.DataFrame,
    images: np.ndarray,
    masks: np.ndarray | None,
    attrs: Mapping[str, Any],
) -> Path:
    """Write a preprocessed dataset; each file appears under its final name only when complete.

    `attrs` must contain `target_label` (the label value to segment) and should
    contain `labels` (a mapping of label value to name) and `config` (the
    preprocessing settings).
    """
    out_dir = Path(out_dir)
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        raise MedpromptError(f"{out_dir / MANIFEST}: manifest lacks columns {missing}")
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) != len(manifest):
        raise MedpromptError(
            f"{out_dir / SLICES}: image must be uint8 [N,H,W] with N = {len(manifest)} manifest rows, "
            f"got {images.dtype} {images.shape}"
        )
    if masks is not None and masks.shape != images.shape:
        raise MedpromptError(f"{out_dir / SLICES}: mask shape {masks.shape} differs from image {images.shape}")
    if "target_label" not in attrs:
        raise MedpromptError(f"{out_dir / SLICES}: attrs need 'target_label'")
    manifest_path = out_dir / MANIFEST
    # both files are complete under temporary names before either replaces a previous dataset; the old
    # manifest goes last-but-one, so a crash during the two renames leaves no manifest, never a mismatched pair
    with atomic_path(manifest_path) as manifest_tmp, atomic_path(out_dir / SLICES) as slices_tmp:
        with h5py.File(slices_tmp, "w") as f:
            chunks = (1, *images.shape[1:])
            f.create_dataset("image", data=images, chunks=chunks, compression="gzip", compression_opts=1)
            if masks is not None:
                f.create_dataset("mask", data=masks.astype(np.uint8), chunks=chunks, compression="gzip", compression_opts=1)
            f.attrs["fingerprint"] = image_fingerprint(images)
            for key, value in attrs.items():
                f.attrs[key] = value if isinstance(value, (int, float, str, np.integer)) else json.dumps(value)
        manifest.to_csv(manifest_tmp, index=False)
        manifest_path.unlink(missing_ok=True)
    return out_dir


class PreprocessedDataset:
    """Read access to a preprocessed dataset directory, validated on opening."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.manifest_path = self.root / MANIFEST
        self.slices_path = self.root / SLICES
        if not self.root.is_dir():
            raise MedpromptError(f"{self.root}: not a directory")
        if not self.manifest_path.is_file():
            raise MedpromptError(
                f"{self.root}: no {MANIFEST}; is this a preprocessed dataset (run `medprompt preprocess` first)?"
            )
        if not self.slices_path.is_file():
            raise MedpromptError(f"{self.root}: no {SLICES} beside {MANIFEST}")
        self.manifest = read_manifest(self.manifest_path)
        self._images: np.ndarray | None = None
        self._masks: np.ndarray | None = None
        with self._open() as f:
            if "image" not in f:
                raise MedpromptError(f"{self.slices_path}: no 'image' array")
            shape = f["image"].shape
            if len(shape) != 3 or f["image"].dtype != np.uint8:
                raise MedpromptError(f"{self.slices_path}: 'image' must be uint8 [N,H,W] (as `medprompt preprocess` "
                                     f"writes it), got {f['image'].dtype} {shape}")
            if shape[0] != len(self.manifest):
                raise MedpromptError(
                    f"{self.slices_path}: 'image' has {shape[0]} slices but {self.manifest_path} has "
                    f"{len(self.manifest)} rows; slice {self.manifest.slice_id.iloc[min(shape[0], len(self.manifest) - 1)]!r} "
                    "is missing from one of them"
                )
            self.has_masks = "mask" in f
            self.attrs = {k: _decode_attr(v) for k, v in f.attrs.items()}
            self.shape = shape
            if shape[0] * shape[1] * shape[2] * (2 if self.has_masks else 1) <= IN_MEMORY_LIMIT_BYTES:
                self._images = f["image"][:]
                self._masks = f["mask"][:] if self.has_masks else None
        self.index_of = {sid: i for i, sid in enumerate(self.manifest.slice_id)}

    def _open(self) -> h5py.File:
        try:
            return h5py.File(self.slices_path, "r")
        except OSError as exc:
            raise MedpromptError(f"{self.slices_path}: cannot be read as HDF5 ({exc})") from None

    def __len__(self) -> int:
        return len(self.manifest)

    @property
    def name(self) -> str:
        return str(self.attrs.get("dataset", self.manifest.dataset.iloc[0] if len(self.manifest) else self.root.name))

    @property
    def target_label(self) -> int:
        if "target_label" not in self.attrs:
            raise MedpromptError(f"{self.slices_path}: no 'target_label' attribute")
        return int(self.attrs["target_label"])

    @property
    def fingerprint(self) -> str:
        """The preprocessing fingerprint recorded at writing time (recomputed if absent)."""
        if "fingerprint" in self.attrs:
            return str(self.attrs["fingerprint"])
        return image_fingerprint(self.images(np.arange(len(self))))

    def images(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Images [len(indices),H,W] uint8 for manifest row positions."""
        return self._rows("image", self._images, indices)

    def masks(self, indices: np.ndarray | list[int]) -> np.ndarray:
        """Full label maps [len(indices),H,W] uint8 for manifest row positions."""
        if not self.has_masks:
            raise MedpromptError(f"{self.slices_path}: no 'mask' array (this dataset has no labels)")
        return self._rows("mask", self._masks, indices)

    def _rows(self, key: str, cached: np.ndarray | None, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if cached is not None:
            return cached[indices]
        with self._open() as f:
            return read_rows(f[key], indices)

    def rows(self, split: str | None = None, with_target: bool = False) -> np.ndarray:
        """Manifest row positions of a split (all when None), optionally only slices with the target."""
        keep = np.ones(len(self.manifest), dtype=bool)
        if split is not None:
            keep &= (self.manifest.split == split).to_numpy()
        if with_target:
            keep &= self.manifest.has_target.to_numpy()
        return np.flatnonzero(keep)


def source_kinds(manifest: pd.DataFrame) -> list[str]:
    """What the rows' source files are, e.g. ['3D .nii.gz'] or ['2D .png'] (empty without source geometry)."""
    if not {"source_format", "volume_shape"} <= set(manifest.columns):
        return []
    kinds = set()
    pairs = manifest[["source_format", "volume_shape"]].drop_duplicates()  # one per file kind, not per slice
    for fmt, shape in zip(pairs.source_format, pairs.volume_shape):
        if isinstance(fmt, str) and isinstance(shape, str):
            dims = sum(1 for n in json.loads(shape) if int(n) > 1)
            kinds.add(f"{'3D' if dims >= 3 else '2D'} {fmt}")
    return sorted(kinds)


def read_manifest(path: Path) -> pd.DataFrame:
    """A dataset's manifest.csv, checked: required columns, unique slice ids, known splits."""
    try:
        manifest = pd.read_csv(path, dtype={"slice_id": str, "case": str, "frame": str, "patient": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MedpromptError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in manifest.columns]
    if missing:
        raise MedpromptError(f"{path}: missing columns {missing}")
    for column in ("slice_id", "case"):
        empty = manifest[column].isna().to_numpy()
        if empty.any():
            raise MedpromptError(f"{path}: row {int(empty.argmax()) + 2} has no {column}")
    duplicated = manifest.slice_id[manifest.slice_id.duplicated()]
    if len(duplicated):
        raise MedpromptError(f"{path}: slice_id {duplicated.iloc[0]!r} appears more than once")
    bad_split = sorted(set(manifest.split) - set(SPLITS))
    if bad_split:
        raise MedpromptError(f"{path}: unknown split values {bad_split}; expected {list(SPLITS)}")
    manifest["has_target"] = manifest["has_target"].astype(bool)
    manifest["frame"] = manifest["frame"].fillna("")
    return manifest


def read_rows(dataset: h5py.Dataset, indices: np.ndarray) -> np.ndarray:
    """Read rows of an HDF5 dataset fast: contiguous runs as slices, never fancy indexing.

    h5py's `d[list]` is two orders of magnitude slower than reading runs.
    """
    indices = np.asarray(indices, dtype=np.int64)
    out = np.empty((len(indices), *dataset.shape[1:]), dtype=dataset.dtype)
    if len(indices) == 0:
        return out
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    start = 0
    for run in np.split(np.arange(len(indices)), breaks):
        first, n = indices[run[0]], len(run)
        out[start : start + n] = dataset[first : first + n]
        start += n
    return out


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    if isinstance(value, np.generic):
        return value.item()
    return value
