"""Your own images: a folder of NIfTI volumes, DICOM series or 2D images (PNG, MHD), one case each, labels optional.

Layout read:

    RAW/NAME.nii.gz            an image (or RAW/images/NAME.nii.gz); also .nii, .mhd, .mha, .nrrd, .png
    RAW/NAME/                  or a DICOM series folder (its files in any order, sorted by position)
    RAW/NAME_gt.nii.gz         its label map, optional (or RAW/labels/NAME.nii.gz)

Each file is one case and one patient (the split unit). Without label files,
training takes its boxes from `medprompt train --boxes` (drawn on the
original images: case, slice_index, x_min, y_min, x_max, y_max); with them,
from the masks. The label values and names, the target, spacing, crop and
intensity settings come from `configs/folder.yaml` (`--set` or `--config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from medprompt.common.errors import MedpromptError
from medprompt.data.dicom_series import is_dicom_series
from medprompt.data.volume_io import strip_suffix
from medprompt.evaluation.ground_truth import IMAGE_SUFFIXES, image_files
from preprocessing.cases import LoadedCase, RawCase, default_load

LABEL_MARK = "_gt"


def image_folder(raw_dir: Path) -> Path:
    """RAW/images when it exists, else RAW itself."""
    return raw_dir / "images" if (raw_dir / "images").is_dir() else raw_dir


def label_file(raw_dir: Path, image: Path) -> Path | None:
    """`NAME_gt.*` beside the image, or `labels/NAME.*`; None when neither exists."""
    name = strip_suffix(image)
    for folder, stem in ((image.parent, name + LABEL_MARK), (raw_dir / "labels", name)):
        for suffix in IMAGE_SUFFIXES:
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    return None


def find_cases(raw_dir: Path, config: Mapping[str, Any]) -> tuple[list[RawCase], list[str]]:
    """One case per image file; two files with the same name (e.g. a.png and a.nii.gz) are refused."""
    folder = image_folder(raw_dir)
    series = [p for p in folder.iterdir() if is_dicom_series(p)]
    images = sorted(p for p in [*image_files(folder, recursive=False), *series] if not strip_suffix(p).endswith(LABEL_MARK))
    names = [strip_suffix(p) for p in images]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise MedpromptError(f"{raw_dir}: several image files are named {twice[0]!r}; each case needs its own name")
    cases = [RawCase(name, name, "", image, label_file(raw_dir, image)) for name, image in zip(names, images)]
    return cases, []


def load_case(raw: RawCase, config: Mapping[str, Any]) -> LoadedCase:
    """Read the image and, when present, its label map (checked against the config's labels)."""
    return default_load(raw, config)


def input_case(path: Path) -> RawCase:
    """A single unlabelled image to predict, named after its file."""
    name = strip_suffix(path)
    return RawCase(name, name, "", path, None, "test")


GROUND_TRUTH = None  # `NAME_gt.*` files and a labels/ folder are what the library reads without help
