"""The cases shown for annotation, their slices in source pixels, and their label maps where they exist.

A case is one image file (or DICOM series folder), named as a box CSV names it:
the manifest's case for a preprocessed dataset, the file name without suffix for
a folder. Slices are [rows, cols] of `read_volume`'s array, so a box drawn on
one is in exactly the source pixels that `train --boxes` maps.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import MANIFEST, PreprocessedDataset
from medprompt.data.volume_io import read_volume

VOLUMES_KEPT = 4  # volumes held in memory; a case is re-read when the page comes back to it
WINDOW_PERCENTILES = (0.5, 99.5)  # the default window/level spans these intensity percentiles of the volume


@dataclass(frozen=True)
class CaseImage:
    """One case: its image (file or DICOM series folder), label map if any, and the slice indices offered."""

    name: str
    image: Path
    label: Path | None = None
    slices: tuple[int, ...] | None = None  # None: every slice of the volume


@dataclass(frozen=True)
class Volume:
    """A case's image [slices, rows, cols] as float32, its default window and its label map if any."""

    image: np.ndarray
    window: tuple[float, float]
    label: np.ndarray | None


class CaseImages:
    """The cases of one annotation session, read lazily and kept for a few cases."""

    def __init__(self, cases: list[CaseImage], target_label: int = 1):
        if not cases:
            raise MedpromptError("no images to annotate")
        names = [c.name for c in cases]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise MedpromptError(f"two images are named {twice[0]!r}; each case needs its own name")
        self.cases = cases
        self.target_label = target_label
        self._by_name = {c.name: c for c in cases}
        self._volumes: OrderedDict[str, Volume] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def from_dataset(cls, root: Path) -> "CaseImages":
        """The source images of a preprocessed dataset's cases, offering the slices its manifest holds."""
        dataset = PreprocessedDataset(root)
        manifest = dataset.manifest
        if "source_image" not in manifest.columns:
            raise MedpromptError(f"{root / MANIFEST}: no source_image column; re-run `medprompt preprocess`")
        cases = []
        for name, rows in manifest.groupby("case", sort=False):
            image = Path(rows.source_image.iloc[0])
            if not image.exists():
                raise MedpromptError(f"{root / MANIFEST}: the source image of case {name!r}, {image}, is gone")
            label = rows.source_label.iloc[0] if "source_label" in rows else None
            label = Path(label) if isinstance(label, str) and label and Path(label).exists() else None
            cases.append(CaseImage(str(name), image, label, tuple(sorted(int(k) for k in rows.slice_index))))
        target = dataset.target_label if "target_label" in dataset.attrs else 1
        return cls(cases, target)

    def case(self, index: int) -> CaseImage:
        """The case at `index` of the list the page shows."""
        if not 0 <= index < len(self.cases):
            raise KeyError(index)
        return self.cases[index]

    def index_of(self, name: str) -> int | None:
        """The list position of the case named `name`, or None."""
        case = self._by_name.get(name)
        return None if case is None else self.cases.index(case)

    def volume(self, index: int) -> Volume:
        """The case's volume, read on first use."""
        case = self.case(index)
        with self._lock:
            if case.name in self._volumes:
                self._volumes.move_to_end(case.name)
                return self._volumes[case.name]
            volume = _read_case(case)
            self._volumes[case.name] = volume
            while len(self._volumes) > VOLUMES_KEPT:
                self._volumes.popitem(last=False)
            return volume

    def slice_indices(self, index: int) -> tuple[int, ...]:
        """The slice indices the page offers for the case (along the source volume's slice axis)."""
        case = self.case(index)
        return case.slices if case.slices is not None else tuple(range(self.volume(index).image.shape[0]))

    def image_slice(self, index: int, slice_index: int) -> np.ndarray:
        """One slice [rows, cols] float32 of the case's image."""
        image = self.volume(index).image
        if not 0 <= slice_index < image.shape[0]:
            raise KeyError(slice_index)
        return image[slice_index]


def _read_case(case: CaseImage) -> Volume:
    """Read a case's image (and label map), with the window that spans its central intensities."""
    image, _ = read_volume(case.image)
    image = image.astype(np.float32)
    low, high = (float(v) for v in np.percentile(image, WINDOW_PERCENTILES))
    if high <= low:
        low, high = float(image.min()), float(image.max()) + 1.0
    label = None
    if case.label is not None:
        label, _ = read_volume(case.label)
        if label.shape != image.shape:
            raise MedpromptError(f"{case.label}: label map of shape {label.shape} does not match its image's {image.shape}")
    return Volume(image, (low, high), label)
