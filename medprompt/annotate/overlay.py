"""`predict` outputs over their inputs, for review: each case's predicted volume found by name, per-slice Dice
where the case has a label map."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medprompt.annotate.images import VOLUMES_KEPT, CaseImages, Recent
from medprompt.common.errors import MedpromptError
from medprompt.data.volume_io import read_volume, strip_suffix
from medprompt.evaluation.ground_truth import image_files
from medprompt.evaluation.metrics import dice


class PredictionOverlay:
    """The predicted label volumes of a `predict` output folder, matched to the session's cases by name."""

    def __init__(self, folder: Path, images: CaseImages):
        if not folder.is_dir():
            raise MedpromptError(f"--predictions {folder}: not a folder")
        names = {c.name for c in images.cases}
        self.files = {strip_suffix(p): p for p in image_files(folder, recursive=True) if strip_suffix(p) in names}
        if not self.files:
            raise MedpromptError(f"--predictions {folder}: no file named after any of the {len(names)} cases "
                                 f"(e.g. {images.cases[0].name}.nii.gz); give the folder `medprompt predict --out` wrote")
        self.images = images
        self._volumes: Recent[np.ndarray] = Recent(VOLUMES_KEPT)

    def slice(self, case_index: int, slice_index: int) -> tuple[np.ndarray | None, float | None]:
        """The predicted mask (0/1 uint8) of a slice, None when the case has no prediction, and its Dice with the
        case's label map (the target label) when there is one."""
        case = self.images.case(case_index)
        if case.name not in self.files:
            return None, None
        mask = (self._volume(case.name)[slice_index] > 0).astype(np.uint8)
        label = self.images.volume(case_index).label
        if label is None:
            return mask, None
        return mask, dice(mask, label[slice_index] == self.images.target_label)

    def _volume(self, name: str) -> np.ndarray:
        return self._volumes.get(name, lambda: self._read(name))

    def _read(self, name: str) -> np.ndarray:
        volume, _ = read_volume(self.files[name])
        expected = self.images.volume(self.images.index_of(name)).image.shape
        if volume.shape != expected:
            raise MedpromptError(f"{self.files[name]}: shape {volume.shape} differs from its image's {expected}")
        return volume
