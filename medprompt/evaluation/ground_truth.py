"""Find ground-truth label files in a folder, name them by case, and read them as label maps.

A folder is either a raw dataset download or a folder of reconstructed labels:

- if it holds any `*_gt.*` file, or a file a dataset layout names as ground truth
  (HC18's `*_Annotation.png`), only those are ground truth: `NAME_gt.ext`
  answers to `NAME`, and to the extra names its layout gives it (ACDC's
  `patientNNN_frameMM_gt` to `patientNNN_ED` / `_ES` through its Info.cfg);
- otherwise every image file is ground truth, named after its file
  (`patient001_ED.nii.gz` -> `patient001_ED`), as `medprompt reconstruct` writes.

The library knows no dataset: each dataset adapter describes its download in
a `GroundTruthLayout`, and the command line passes the adapters' layouts.
A single-class PNG stored as 0/255 is read as 0/1.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from medprompt.common.errors import MedpromptError
from medprompt.data.volume_io import ITK_SUFFIXES, NIFTI_SUFFIXES, PNG_SUFFIXES, VolumeMeta, read_volume, strip_suffix

IMAGE_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES + PNG_SUFFIXES


class CaseReference(Protocol):
    """Per-case facts a download keeps beside its label files: a pixel size for files without one, and extra scores."""

    summary: dict[str, str]   # extra score column -> its name in the summary line

    def pixel_size(self, case: str) -> float | None: ...

    def scores(self, case: str, mask: np.ndarray) -> dict[str, float]: ...


@dataclass(frozen=True)
class GroundTruthLayout:
    """How one dataset's raw download names and stores its ground truth."""

    name: str                                             # the dataset (its bundled config names the labels)
    case_pattern: str                                     # regular expression of its case names
    annotation_suffix: str = ""                           # files ending so are ground truth too
    read_annotation: Callable[[Path], np.ndarray] | None = None   # such a file -> label map [slices, rows, cols]
    aliases: Callable[[Path], list[str]] | None = None    # extra case names of a `*_gt` file
    reference: Callable[[Path, Path | None], CaseReference | None] | None = None  # (GT_DIR, --reference) -> facts

    def is_annotation(self, path: Path) -> bool:
        return bool(self.annotation_suffix) and path.name.endswith(self.annotation_suffix)


def image_files(folder: Path, recursive: bool) -> list[Path]:
    """Image files (NIfTI, ITK, PNG) in a folder, sorted."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in candidates if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))


def annotation_layout(path: Path, layouts: Sequence[GroundTruthLayout]) -> GroundTruthLayout | None:
    """The layout whose annotation files `path` is one of."""
    return next((layout for layout in layouts if layout.is_annotation(path)), None)


def is_raw_ground_truth(path: Path, layouts: Sequence[GroundTruthLayout] = ()) -> bool:
    """Whether a file is a raw download's ground truth (`*_gt.*`, or a layout's annotation file)."""
    return strip_suffix(path).endswith("_gt") or annotation_layout(path, layouts) is not None


def case_keys(path: Path, layouts: Sequence[GroundTruthLayout] = ()) -> list[str]:
    """The case names a ground-truth file answers to."""
    layout = annotation_layout(path, layouts)
    if layout is not None:
        return [path.name[: -len(layout.annotation_suffix)]]
    name = strip_suffix(path)
    if not name.endswith("_gt"):
        return [name]
    keys = [name[: -len("_gt")]]
    for layout in layouts:
        if layout.aliases is not None:
            keys += [key for key in layout.aliases(path) if key not in keys]
    return keys


def index_ground_truth(gt_dir: str | os.PathLike, layouts: Sequence[GroundTruthLayout] = ()) -> dict[str, Path]:
    """Case name -> ground-truth file for every ground-truth file under `gt_dir`."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise MedpromptError(f"{gt_dir}: ground-truth folder not found")
    files = image_files(gt_dir, recursive=True)
    raw = [p for p in files if is_raw_ground_truth(p, layouts)]
    if not raw:
        files = image_files(gt_dir, recursive=False)
    index: dict[str, Path] = {}
    for path in raw or files:
        for key in case_keys(path, layouts):
            if key in index:
                raise MedpromptError(f"{gt_dir}: two ground-truth files for case {key!r}: {index[key]} and {path}")
            index[key] = path
    if not index:
        raise MedpromptError(f"{gt_dir}: no ground-truth files (.nii.gz, .mhd, .png) found")
    return index


def recognise_dataset(cases: list[str], layouts: Sequence[GroundTruthLayout] = ()) -> str | None:
    """The dataset whose naming all case names follow, or None."""
    for layout in layouts:
        if cases and all(re.match(layout.case_pattern, c) for c in cases):
            return layout.name
    return None


def read_label_map(path: Path, layouts: Sequence[GroundTruthLayout] = ()) -> tuple[np.ndarray, VolumeMeta]:
    """A label file as uint8 [slices, rows, cols]: layout annotations read by their layout, 0/255 PNG masks as 0/1."""
    layout = annotation_layout(path, layouts)
    if layout is not None and layout.read_annotation is not None:
        _, meta = read_volume(path)
        return layout.read_annotation(path), meta
    labels, meta = read_volume(path)
    if np.issubdtype(labels.dtype, np.floating) and not np.array_equal(labels, np.round(labels)):
        raise MedpromptError(f"{path}: label file holds non-integer values (a probability map?)")
    if meta.format == ".png" and set(np.unique(labels).tolist()) <= {0, 255}:
        labels = labels // 255
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
        raise MedpromptError(f"{path}: label values outside 0..255")
    return labels.astype(np.uint8), meta
