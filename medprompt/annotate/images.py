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
from typing import Callable, Generic, Hashable, TypeVar

import numpy as np

from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import MANIFEST, PreprocessedDataset
from medprompt.data.volume_io import read_volume

VOLUMES_KEPT = 4  # volumes held in memory; a case is re-read when the page comes back to it
WINDOW_PERCENTILES = (0.5, 99.5)  # the default window/level spans these intensity percentiles of the volume


Value = TypeVar("Value")


class Recent(Generic[Value]):
    """The last `size` values by key, each computed once by the `load` given with its first request; shared by
    the server's threads."""

    def __init__(self, size: int):
        self.size = size
        self._values: OrderedDict[Hashable, Value] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], Value]) -> Value:
        with self._lock:
            if key not in self._values:
                self._values[key] = load()
                while len(self._values) > self.size:
                    self._values.popitem(last=False)
            self._values.move_to_end(key)
            return self._values[key]


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
        self._index = {c.name: i for i, c in enumerate(cases)}
        self._volumes: Recent[Volume] = Recent(VOLUMES_KEPT)

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
        return self._index.get(name)

    def volume(self, index: int) -> Volume:
        """The case's volume, read on first use."""
        case = self.case(index)
        return self._volumes.get(case.name, lambda: _read_case(case))

    def slice_indices(self, index: int) -> tuple[int, ...]:
        """The slice indices the page offers for the case (along the source volume's slice axis); reads the
        volume unless the dataset's manifest lists them."""
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
