"""Read and write source images (NIfTI, MetaImage and other ITK formats, PNG, DICOM series folders) as
[slices, rows, cols] arrays.

Slicing convention, the same for every format: NIfTI data [i, j, k] becomes
array[k, j, i] (slice k, row j, column i), which is SimpleITK's array order
for .mhd; a 2D file is one slice; a PNG is (rows, cols). In box CSVs and
wherever "x" and "y" appear, x is the column (NIfTI i / ITK index 0) and y the
row (NIfTI j / ITK index 1).

`VolumeMeta` remembers what a file needs to be written back in its own
geometry; it travels in the manifest as these columns:

    source_format   .nii.gz, .mhd, .mha, .nrrd, .png, or .dcm for a DICOM series folder (written back as
                    NIfTI in the series' geometry: `output_suffix`)
    volume_shape    JSON list, the array shape as stored in the file (NIfTI [i,j,k], ITK size (x,y,z), PNG (rows, cols))
    spacing         JSON list, mm per stored axis (NIfTI header zooms, ITK spacing); null where unknown
    origin          JSON list, ITK origin (ITK formats only)
    direction       JSON list, ITK direction cosines, row-major (ITK formats only)
    nifti_header    base64 of the 348-byte NIfTI-1 header (NIfTI only): the affine, qform/sform and zooms come back bit for bit
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import math
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import cv2
import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medprompt.common.atomic import atomic_path
from medprompt.common.errors import MedpromptError
from medprompt.data.dicom_series import is_dicom_series, read_series

NIFTI_SUFFIXES = (".nii.gz", ".nii")
ITK_SUFFIXES = (".mhd", ".mha", ".nrrd")
PNG_SUFFIXES = (".png",)
DICOM_SERIES = ".dcm"  # the format of a series folder
MET_TYPE_BYTES = {"MET_UCHAR": 1, "MET_CHAR": 1, "MET_USHORT": 2, "MET_SHORT": 2, "MET_UINT": 4, "MET_INT": 4,
                  "MET_FLOAT": 4, "MET_DOUBLE": 8}
META_COLUMNS = ("source_format", "volume_shape", "spacing", "origin", "direction", "nifti_header")


@dataclass(frozen=True)
class VolumeMeta:
    """The geometry and format of a source file, enough to write an array back in its place."""

    format: str
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...] = ()
    direction: tuple[float, ...] = ()
    nifti_header: str = field(default="", repr=False)

    @property
    def output_suffix(self) -> str:
        """The suffix a file written in this geometry takes: the source's own, NIfTI for a DICOM series."""
        return ".nii.gz" if self.format == DICOM_SERIES else self.format

    @property
    def n_slices(self) -> int:
        """Number of 2D slices (1 for a 2D file)."""
        return int(self.shape[2]) if self.format != ".png" and len(self.shape) == 3 else 1

    @property
    def slice_shape(self) -> tuple[int, int]:
        """(rows, cols) of one slice."""
        if self.format == ".png":
            return int(self.shape[0]), int(self.shape[1])
        return int(self.shape[1]), int(self.shape[0])

    @property
    def slice_spacing(self) -> tuple[float, float]:
        """(row, col) pixel spacing in mm; NaN where unknown."""
        if self.format == ".png":
            return float(self.spacing[0]), float(self.spacing[1])
        return float(self.spacing[1]), float(self.spacing[0])

    @property
    def zyx_spacing(self) -> tuple[float, ...]:
        """Spacing in array order [slices, rows, cols] (the slice axis only for 3D files)."""
        if self.format == ".png":
            return self.slice_spacing
        return tuple(float(s) for s in reversed(self.spacing))

    def with_spacing(self, spacing: tuple[float, ...]) -> "VolumeMeta":
        """A copy with another spacing (PNG files carry none; HC18 takes it from its CSV)."""
        return VolumeMeta(self.format, self.shape, tuple(spacing), self.origin, self.direction, self.nifti_header)

    def to_columns(self) -> dict[str, str]:
        """The manifest columns of this meta."""
        return {
            "source_format": self.format,
            "volume_shape": json.dumps(list(self.shape)),
            "spacing": json.dumps([None if not math.isfinite(s) else s for s in self.spacing]),
            "origin": json.dumps(list(self.origin)) if self.origin else "",
            "direction": json.dumps(list(self.direction)) if self.direction else "",
            "nifti_header": self.nifti_header,
        }

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "VolumeMeta":
        """The meta recorded in a manifest row."""
        missing = [c for c in META_COLUMNS if c not in row]
        if missing:
            raise MedpromptError(f"manifest lacks the source geometry columns {missing}; re-run `medprompt preprocess`")

        def listed(value: Any) -> list:
            return json.loads(value) if isinstance(value, str) and value else []

        spacing = tuple(math.nan if s is None else float(s) for s in listed(row["spacing"]))
        header = row["nifti_header"] if isinstance(row["nifti_header"], str) else ""
        return cls(
            str(row["source_format"]),
            tuple(int(v) for v in listed(row["volume_shape"])),
            spacing,
            tuple(float(v) for v in listed(row["origin"])),
            tuple(float(v) for v in listed(row["direction"])),
            header,
        )


def source_format(path: str | os.PathLike) -> str:
    """The format suffix of a supported file (`.dcm` for a DICOM series folder), or a one-line error naming it."""
    if Path(path).is_dir():
        if is_dicom_series(path):
            return DICOM_SERIES
        raise MedpromptError(f"{path}: a folder without DICOM files; expected an image file or a DICOM series folder")
    name = Path(path).name.lower()
    for suffix in NIFTI_SUFFIXES + ITK_SUFFIXES + PNG_SUFFIXES:
        if name.endswith(suffix):
            return ".nii.gz" if suffix in NIFTI_SUFFIXES else suffix
    raise MedpromptError(f"{path}: unsupported file type; expected NIfTI (.nii/.nii.gz), .mhd/.mha/.nrrd, .png or a "
                         "DICOM series folder")


def strip_suffix(path: str | os.PathLike) -> str:
    """File name without its (possibly double) image suffix: `patient001_frame01.nii.gz` -> `patient001_frame01`; a
    DICOM series folder's name as it is."""
    name = Path(path).name
    if Path(path).is_dir():
        return name
    for suffix in NIFTI_SUFFIXES + ITK_SUFFIXES + PNG_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def read_volume(path: str | os.PathLike) -> tuple[np.ndarray, VolumeMeta]:
    """Read an image or label file (or a DICOM series folder) as [slices, rows, cols] plus the meta to write it back."""
    path = Path(path)
    if path.is_dir() and source_format(path) == DICOM_SERIES:
        series = read_series(path)
        return series.array, VolumeMeta(DICOM_SERIES, series.size, series.spacing, series.origin, series.direction)
    if not path.is_file():
        raise MedpromptError(f"{path}: file not found")
    fmt = source_format(path)
    if fmt == ".nii.gz":
        return _read_nifti(path)
    if fmt == ".png":
        return _read_png(path)
    return _read_itk(path, fmt)


def write_volume(array: np.ndarray, meta: VolumeMeta, path: str | os.PathLike) -> Path:
    """Write [slices, rows, cols] in the source's format and geometry, atomically; uint8 labels or float32 values."""
    path = Path(path)
    expected = (meta.n_slices, *meta.slice_shape)
    if tuple(array.shape) != expected:
        raise MedpromptError(f"{path}: array shape {tuple(array.shape)} differs from the source's {expected}")
    if meta.format == ".nii.gz":
        _write_nifti(array, meta, path)
    elif meta.format == ".png":
        _write_png(array, path)
    else:
        _write_itk(array, meta, path)
    return path


def _read_nifti(path: Path) -> tuple[np.ndarray, VolumeMeta]:
    try:
        _check_nifti_spacing(path)
        image = nib.load(str(path))
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            raise MedpromptError(f"{path}: not a NIfTI-1 image")
        data = np.asanyarray(image.dataobj)
    except MedpromptError:
        raise
    except (OSError, EOFError, ValueError, zlib.error, nib.filebasedimages.ImageFileError,
            nib.spatialimages.HeaderDataError, nib.wrapstruct.WrapStructError) as exc:
        reason = " ".join(str(exc).split())
        raise MedpromptError(f"{path}: unreadable or truncated NIfTI ({reason})") from None
    if isinstance(image, nib.Nifti2Image):
        raise MedpromptError(f"{path}: NIfTI-2 files are not supported; convert to NIfTI-1")
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise MedpromptError(f"{path}: expected a 2D or 3D NIfTI, got shape {data.shape} (pass one frame, not a 4D series)")
    zooms = tuple(float(z) for z in image.header.get_zooms()[: data.ndim])
    header = base64.b64encode(image.header.binaryblock).decode("ascii")
    meta = VolumeMeta(".nii.gz", tuple(data.shape), zooms, nifti_header=header)
    volume = data.T if data.ndim == 3 else data.T[None]
    return np.ascontiguousarray(volume), meta


def _check_nifti_spacing(path: Path) -> None:
    """Refuse a NIfTI-1 header whose pixel spacing is zero or negative (nibabel would silently make it 1 or |x|)."""
    with nib.openers.ImageOpener(str(path)) as handle:
        header = nib.Nifti1Header.from_fileobj(handle, check=False)
    if int(header["sizeof_hdr"]) != header.sizeof_hdr:
        return  # not NIfTI-1: nibabel's own reading decides
    n_axes = int(np.clip(header["dim"][0], 1, 3))
    spacing = [float(v) for v in header["pixdim"][1:1 + n_axes]]
    if not all(v > 0 for v in spacing):
        shown = " x ".join(f"{v:g}" for v in spacing)
        raise MedpromptError(f"{path}: pixel spacing {shown} in its header (pixdim) is not positive; "
                             "a millimetre geometry cannot be known, fix the header")


def _read_itk(path: Path, fmt: str) -> tuple[np.ndarray, VolumeMeta]:
    if fmt == ".mhd":
        _check_mhd_data(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise MedpromptError(f"{path}: unreadable or truncated image ({_itk_reason(exc)})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise MedpromptError(f"{path}: expected a single-channel image, got {image.GetNumberOfComponentsPerPixel()} channels")
    if image.GetDimension() not in (2, 3):
        raise MedpromptError(f"{path}: expected a 2D or 3D image, got {image.GetDimension()}D")
    array = sitk.GetArrayFromImage(image)
    meta = VolumeMeta(fmt, tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()), tuple(image.GetDirection()))
    return (array if array.ndim == 3 else array[None]), meta


def _check_mhd_data(path: Path) -> None:
    """Check a MetaImage header's data file exists and is as long as the header says (ITK would print to stderr)."""
    header = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            header[key.strip()] = value.strip()
    data_file = header.get("ElementDataFile", "")
    if not data_file or data_file == "LOCAL" or data_file.startswith("LIST") or "%" in data_file:
        return
    data_path = path.parent / data_file
    if not data_path.is_file():
        raise MedpromptError(f"{path}: its data file {data_file} is missing")
    item = MET_TYPE_BYTES.get(header.get("ElementType", ""))
    if item is None or header.get("CompressedData", "False").lower() == "true":
        return
    try:
        count = math.prod(int(v) for v in header.get("DimSize", "").split()) * int(header.get("ElementNumberOfChannels", "1"))
    except ValueError:
        raise MedpromptError(f"{path}: DimSize {header.get('DimSize')!r} is not a list of integers") from None
    if data_path.stat().st_size < count * item:
        raise MedpromptError(
            f"{path}: truncated data file {data_file} ({data_path.stat().st_size} bytes, the header needs {count * item})"
        )


def _itk_reason(exc: RuntimeError) -> str:
    """The informative line of a SimpleITK exception."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    errors = [line.split("): ", 1)[-1] for line in lines if "ERROR" in line]
    return (errors[-1] if errors else lines[-1] if lines else "read failed").replace("sitk::ERROR: ", "")


def _read_png(path: Path) -> tuple[np.ndarray, VolumeMeta]:
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise MedpromptError(f"{path}: unreadable or truncated PNG")
    if array.ndim == 3:
        if array.shape[2] == 4:
            array = array[..., :3]
        array = cv2.cvtColor(array, cv2.COLOR_BGR2GRAY)
    return array[None], VolumeMeta(".png", tuple(array.shape), (math.nan, math.nan))


def _write_nifti(array: np.ndarray, meta: VolumeMeta, path: Path) -> None:
    try:
        header = nib.Nifti1Header(base64.b64decode(meta.nifti_header, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise MedpromptError(f"{path}: the manifest's nifti_header is not a valid NIfTI-1 header ({exc})") from None
    header.set_data_dtype(array.dtype)
    header.set_slope_inter(None, None)
    data = array.T if len(meta.shape) == 3 else array[0].T
    image = nib.Nifti1Image(np.ascontiguousarray(data), None, header=header)
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(image.to_bytes(), compresslevel=6))


def _write_itk(array: np.ndarray, meta: VolumeMeta, path: Path) -> None:
    image = sitk.GetImageFromArray(array if len(meta.shape) == 3 else array[0])
    image.SetSpacing(meta.spacing)
    image.SetOrigin(meta.origin)
    image.SetDirection(meta.direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        sitk.WriteImage(image, str(staging / path.name))
        written = sorted(staging.iterdir(), key=lambda p: p.name == path.name)
        for part in written:
            os.replace(part, path.parent / part.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_png(array: np.ndarray, path: Path) -> None:
    ok, encoded = cv2.imencode(".png", array[0])
    if not ok:
        raise MedpromptError(f"{path}: PNG encoding failed for dtype {array.dtype}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
