"""DICOM series generated for the tests: synthetic pixels with real geometry tags, one file per slice under
shuffled names. No patient data: the patient's name is a placeholder."""

from __future__ import annotations

import random
from pathlib import Path

import SimpleITK as sitk

STUDY_UID = "1.2.826.0.1.3680043.9.6"
SERIES_UID = "1.2.826.0.1.3680043.9.7"
FRAME_OF_REFERENCE_UID = "1.2.826.0.1.3680043.9.5"


def write_series(folder: Path, image: sitk.Image, uid: str = SERIES_UID, skip: int | None = None,
                 duplicate: int | None = None) -> Path:
    """`image`'s slices as one file each under shuffled names, with position, orientation and spacing tags;
    slice `skip` left out, slice `duplicate` written twice."""
    folder.mkdir(parents=True, exist_ok=True)
    slices = image.GetSize()[2]
    names = [f"IM{n:04d}.dcm" for n in random.Random(slices).sample(range(1000), slices + 1)]
    indices = [k for k in range(slices) if k != skip] + ([duplicate] if duplicate is not None else [])
    for name, k in zip(names, indices):
        write_slice(folder / name, image, k, uid)
    return folder


def write_slice(path: Path, image: sitk.Image, k: int, uid: str = SERIES_UID) -> None:
    """Slice `k` of `image` as one MR instance of series `uid`, placed where the image's geometry puts it."""
    plane, d = image[:, :, k], image.GetDirection()
    tags = {"0008|0060": "MR", "0020|000d": STUDY_UID, "0020|000e": uid, "0010|0010": "Phantom^Test",
            "0020|0052": FRAME_OF_REFERENCE_UID, "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0037": "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
            "0018|0050": str(image.GetSpacing()[2])}
    for key, value in tags.items():
        plane.SetMetaData(key, value)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(str(path))
    writer.Execute(plane)
