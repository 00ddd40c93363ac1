"""A DICOM series folder as a volume: SimpleITK's GDCM series reader, with the checks a PACS export needs.

One folder holds one series. GDCM orders the files by their position along
the slice normal, never by file name. Before the pixels are read, every file's
position and orientation are checked. Mixed orientations (a localizer among the
files), duplicated positions, and gaps or uneven spacing (a missing slice) are
each refused in one line, rather than read as a silently wrong volume. Only
geometry is read from the headers: no patient data reaches a log, a manifest or
an error message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medprompt.common.errors import MedpromptError

POSITION, ORIENTATION = "0020|0032", "0020|0037"
SPACING_TOLERANCE = 0.01  # relative spread of the gaps between slice positions that still counts as even


@dataclass(frozen=True)
class Series:
    """A series' voxels [slices, rows, cols] and its ITK geometry (size x,y,z; spacing; origin; direction)."""

    array: np.ndarray
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]


def is_dicom_file(path: Path) -> bool:
    """Whether a file carries the DICOM preamble's `DICM` marker."""
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:] == b"DICM"
    except OSError:
        return False


def is_dicom_series(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder whose files (not its subfolders) include DICOM files."""
    path = Path(path)
    return path.is_dir() and any(is_dicom_file(p) for p in path.iterdir() if p.is_file())


def read_series(folder: str | os.PathLike) -> Series:
    """The one series in `folder`, checked (see the module's docstring) and read in position order."""
    folder = Path(folder)
    files = series_files(folder)
    spacing = _slice_spacing(folder, files)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise MedpromptError(f"{folder}: unreadable DICOM series ({str(exc).strip().splitlines()[-1]})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise MedpromptError(f"{folder}: a colour DICOM series; expected single-channel images")
    array = sitk.GetArrayFromImage(image)
    if array.ndim == 2:
        array = array[None]
    size, pixel = tuple(image.GetSize()), tuple(image.GetSpacing())
    if len(files) > 1:
        pixel = (*pixel[:2], spacing)
    return Series(array, size, pixel, tuple(image.GetOrigin()), tuple(image.GetDirection()))


def series_files(folder: str | os.PathLike) -> list[str]:
    """The files of the one series in `folder`, in position order along the slice normal (GDCM's sort)."""
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise MedpromptError(f"{folder}: no readable DICOM series")
    if len(ids) > 1:
        raise MedpromptError(f"{folder}: holds {len(ids)} DICOM series (SeriesInstanceUID); put each in its own folder")
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0]))


def _slice_spacing(folder: Path, files: list[str]) -> float:
    """The even gap (mm) between the files' positions along the slice normal; a one-line error for a localizer,
    a duplicated slice or a missing one (1.0 for a single file)."""
    positions, orientations = [], []
    for name in files:
        reader = sitk.ImageFileReader()
        reader.SetFileName(name)
        try:
            reader.ReadImageInformation()
            positions.append([float(v) for v in reader.GetMetaData(POSITION).split("\\")])
            orientations.append([float(v) for v in reader.GetMetaData(ORIENTATION).split("\\")])
        except (RuntimeError, ValueError):
            raise MedpromptError(f"{Path(name).name} in {folder}: no image position or orientation; not part of "
                                 "an image series (remove it)") from None
    orientation = np.asarray(orientations)
    if len(files) == 1:
        return 1.0
    if np.abs(orientation - orientation[0]).max() > 1e-4:
        odd = Path(files[int(np.abs(orientation - orientation[0]).max(axis=1).argmax())]).name
        raise MedpromptError(f"{folder}: its slices have different orientations ({odd} differs; a localizer among "
                             "the files?); keep one orientation per series folder")
    normal = np.cross(orientation[0][:3], orientation[0][3:])
    depth = np.sort(np.asarray(positions) @ normal)
    gaps = np.diff(depth)
    step = float(np.median(gaps))
    if gaps.min() < SPACING_TOLERANCE * max(step, 1e-6):
        raise MedpromptError(f"{folder}: two slices at the same position ({depth[int(gaps.argmin())]:.2f} mm along the "
                             "normal); a duplicated file or two acquisitions in one folder")
    if gaps.max() - gaps.min() > SPACING_TOLERANCE * step:
        at = int(np.abs(gaps - step).argmax())
        raise MedpromptError(f"{folder}: uneven slice spacing: a gap of {gaps[at]:.2f} mm after {depth[at]:.2f} mm "
                             f"where the others are {step:.2f} mm (a missing slice?)")
    return step
