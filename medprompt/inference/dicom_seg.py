"""A predicted mask as a DICOM Segmentation object (SEG) over the series it was predicted from, and read back.

The SEG (written by highdicom) references every instance of its source series by SOP Instance UID and lies in
their frame of reference, so a clinical viewer or PACS opens it over those images. Its frames follow the series'
position order, the order `dicom_series.read_series` reads a volume in. Like any DICOM SEG it carries the
source's patient and study module, as the standard requires; nothing of it goes to logs or manifests.
"""

from __future__ import annotations

import os
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes

from medprompt import __version__
from medprompt.common.atomic import atomic_path
from medprompt.common.errors import MedpromptError
from medprompt.data.dicom_series import series_files

SEG_SUFFIX = ".seg.dcm"
SERIES_NUMBER = 900  # the SEG's own series number; viewers list it beside the source's


def source_instances(series: str | os.PathLike, pixels: bool = True) -> list[pydicom.Dataset]:
    """The series' instances in position order (with their pixels unless `pixels` is False: headers only)."""
    return [pydicom.dcmread(name, stop_before_pixels=not pixels) for name in series_files(series)]


def write_seg(mask: np.ndarray, series: str | os.PathLike, path: str | os.PathLike, segment_label: str,
              algorithm: str) -> Path:
    """Write `mask` ([slices, rows, cols], non-zero inside, in the series' position order) as a binary SEG of one
    segment named `segment_label`, made by `algorithm` (a method's name), atomically at `path`."""
    sources = source_instances(series)
    expected = (len(sources), int(sources[0].Rows), int(sources[0].Columns))
    if mask.shape != expected:
        raise MedpromptError(f"{series}: a mask of shape {mask.shape} for a series of {expected[0]} slices of "
                             f"{expected[1]}x{expected[2]} pixels")
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=segment_label,
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.AnatomicalStructure,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=f"medprompt {algorithm}", family=codes.cid7162.ArtificialIntelligence, version=__version__))
    try:
        seg = hd.seg.Segmentation(
            source_images=sources, pixel_array=np.asarray(mask) > 0,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[segment],
            series_instance_uid=hd.UID(), series_number=SERIES_NUMBER, sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="medprompt", manufacturer_model_name=algorithm, software_versions=__version__,
            device_serial_number="n/a", series_description=f"medprompt {segment_label}",
            omit_empty_frames=bool(np.any(mask)))
    except (ValueError, AttributeError, TypeError) as exc:
        raise MedpromptError(f"{series}: cannot be referenced by a DICOM SEG ({exc})") from None
    with atomic_path(path) as tmp:
        seg.save_as(tmp)
    return Path(path)


def read_seg(path: str | os.PathLike, series: str | os.PathLike) -> np.ndarray:
    """The SEG's first segment as a bool mask [slices, rows, cols] over `series`, in its position order; refused
    in one line when it does not reference that series."""
    try:
        seg = hd.seg.segread(path)
    except (OSError, ValueError, AttributeError, pydicom.errors.InvalidDicomError) as exc:
        raise MedpromptError(f"{path}: not a readable DICOM SEG ({exc})") from None
    uids = [str(source.SOPInstanceUID) for source in source_instances(series, pixels=False)]
    referenced = {sop for _, _, sop in seg.get_source_image_uids()}
    if not referenced <= set(uids):
        raise MedpromptError(f"{path}: references instances that are not in {series}")
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[1])
    return pixels[..., 0] > 0
