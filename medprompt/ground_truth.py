"""Find ground-truth label files in a folder, name them by case, and read them as label maps.

A folder is either a raw dataset download or a folder of reconstructed labels:

- if it holds any `*_gt.*` or `*_Annotation.png` file (a raw download), only
  those are ground truth: ACDC `patientNNN_frameMM_gt.nii.gz` answers to
  `patientNNN_frameMM` and, through the `Info.cfg` beside it, to
  `patientNNN_ED` / `patientNNN_ES`; CAMUS `patientNNNN_2CH_ED_gt.mhd` to
  `patientNNNN_2CH_ED`; HC18 `NNN_HC_Annotation.png` (an outline, filled here)
  to `NNN_HC`;
- otherwise every image file is ground truth, named after its file
  (`patient001_ED.nii.gz` -> `patient001_ED`), as `medprompt reconstruct` writes.

A single-class PNG stored as 0/255 is read as 0/1.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from medprompt.errors import MedpromptError
from medprompt.volume_io import ITK_SUFFIXES, NIFTI_SUFFIXES, PNG_SUFFIXES, VolumeMeta, read_volume, strip_suffix
from preprocessing.acdc import read_info
from preprocessing.hc18 import annotation_mask

IMAGE_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES + PNG_SUFFIXES
ANNOTATION_SUFFIX = "_Annotation.png"
CASE_PATTERNS = {
    "acdc": re.compile(r"^patient\d{3}_(ED|ES|frame\d+)$"),
    "camus": re.compile(r"^patient\d{4}_[24]CH_(ED|ES)$"),
    "hc18": re.compile(r"^\d+_\d*HC$"),
}


def image_files(folder: Path, recursive: bool) -> list[Path]:
    """Image files (NIfTI, ITK, PNG) in a folder, sorted."""
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in candidates if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))


def is_raw_ground_truth(path: Path) -> bool:
    """Whether a file is a raw download's ground truth (`*_gt.*` or `*_Annotation.png`)."""
    return strip_suffix(path).endswith("_gt") or path.name.endswith(ANNOTATION_SUFFIX)


def case_keys(path: Path) -> list[str]:
    """The case names a ground-truth file answers to."""
    name = strip_suffix(path)
    if path.name.endswith(ANNOTATION_SUFFIX):
        return [name[: -len("_Annotation")]]
    if not name.endswith("_gt"):
        return [name]
    base = name[: -len("_gt")]
    keys = [base]
    match = re.match(r"^(patient\d+)_frame(\d+)$", base)
    if match and (path.parent / "Info.cfg").is_file():
        info = read_info(path.parent / "Info.cfg")
        for frame in ("ED", "ES"):
            if frame in info and info[frame].strip().isdigit() and int(info[frame]) == int(match.group(2)):
                keys.append(f"{match.group(1)}_{frame}")
    return keys


def index_ground_truth(gt_dir: str | os.PathLike) -> dict[str, Path]:
    """Case name -> ground-truth file for every ground-truth file under `gt_dir`."""
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise MedpromptError(f"{gt_dir}: ground-truth folder not found")
    files = image_files(gt_dir, recursive=True)
    raw = [p for p in files if is_raw_ground_truth(p)]
    if not raw:
        files = image_files(gt_dir, recursive=False)
    index: dict[str, Path] = {}
    for path in raw or files:
        for key in case_keys(path):
            if key in index:
                raise MedpromptError(f"{gt_dir}: two ground-truth files for case {key!r}: {index[key]} and {path}")
            index[key] = path
    if not index:
        raise MedpromptError(f"{gt_dir}: no ground-truth files (.nii.gz, .mhd, .png) found")
    return index


def recognise_dataset(cases: list[str]) -> str | None:
    """The dataset whose naming all case names follow (acdc, camus, hc18), or None."""
    for name, pattern in CASE_PATTERNS.items():
        if cases and all(pattern.match(c) for c in cases):
            return name
    return None


def read_label_map(path: Path) -> tuple[np.ndarray, VolumeMeta]:
    """A label file as uint8 [slices, rows, cols]: HC18 outlines filled, 0/255 PNG masks as 0/1."""
    if path.name.endswith(ANNOTATION_SUFFIX):
        _, meta = read_volume(path)
        return annotation_mask(path), meta
    labels, meta = read_volume(path)
    if np.issubdtype(labels.dtype, np.floating) and not np.array_equal(labels, np.round(labels)):
        raise MedpromptError(f"{path}: label file holds non-integer values (a probability map?)")
    if meta.format == ".png" and set(np.unique(labels).tolist()) <= {0, 255}:
        labels = labels // 255
    if labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
        raise MedpromptError(f"{path}: label values outside 0..255")
    return labels.astype(np.uint8), meta
