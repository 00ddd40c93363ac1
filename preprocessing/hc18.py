"""HC18 fetal head ultrasound (van den Heuvel et al. 2018): PNG images with the skull ellipse drawn as an outline.

Layout as downloaded: `training_set/NNN_HC.png` with `NNN_HC_Annotation.png`
(an ellipse outline, 0/255) and `training_set_pixel_size_and_HC.csv`; the
`test_set/` has images and `test_set_pixel_size.csv` but no annotations, so it
is not part of the preprocessed dataset (predict it with `medprompt predict`).
The mask is the outline's filled interior (OpenCV contour fill); an image
whose outline is not a closed curve is reported and excluded. Images of the
same pregnancy (`010_HC`, `010_2HC`) share a patient, hence a split.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import cv2
import numpy as np

from medprompt.common.errors import MedpromptError
from medprompt.data.volume_io import read_volume, strip_suffix
from medprompt.evaluation.ground_truth import GroundTruthLayout
from preprocessing.cases import LoadedCase, RawCase, load_image
from preprocessing.head_circumference import hc18_reference, read_hc_table

ANNOTATION_SUFFIX = "_Annotation.png"
HEAD_LABEL = 1


def fill_outline(outline: np.ndarray, path: Path) -> np.ndarray:
    """The filled interior (outline included) of the largest closed curve in an annotation, as a 0/1 uint8 mask."""
    binary = (np.asarray(outline) > 0).astype(np.uint8)
    if not binary.any():
        raise MedpromptError(f"{path}: empty annotation (no outline drawn)")
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    outer = [i for i, h in enumerate(hierarchy[0]) if h[3] < 0]
    largest = max(outer, key=lambda i: cv2.contourArea(contours[i]))
    holes = [i for i, h in enumerate(hierarchy[0]) if h[3] == largest]
    hole_area = max((cv2.contourArea(contours[i]) for i in holes), default=0.0)
    if hole_area < 0.5 * cv2.contourArea(contours[largest]):
        raise MedpromptError(f"{path}: the head outline is not a closed curve; cannot fill the ellipse")
    mask = np.zeros_like(binary)
    cv2.drawContours(mask, contours, largest, HEAD_LABEL, thickness=cv2.FILLED)
    return mask


def annotation_mask(path: Path) -> np.ndarray:
    """Read an HC18 annotation PNG and fill its outline: [1, rows, cols] uint8 (0 / 1)."""
    outline, _ = read_volume(path)
    return fill_outline(outline[0], path)[None]


def pixel_sizes(csvs: Iterable[Path]) -> dict[str, float]:
    """Pixel size (mm) per image file name, from HC18 `*pixel_size*.csv` files."""
    sizes: dict[str, float] = {}
    for csv in sorted(csvs):
        sizes.update(read_hc_table(csv)["pixel_size_mm"].astype(float).to_dict())
    return sizes


def patient_of(name: str) -> str:
    """The pregnancy a file belongs to: the leading number (`010_2HC` -> `010`)."""
    match = re.match(r"^(\d+)_", name)
    return match.group(1) if match else name


def find_cases(raw_dir: Path, config: Mapping[str, Any]) -> tuple[list[RawCase], list[str]]:
    """Every annotated image under `raw_dir`; an annotation without its image is skipped."""
    sizes = pixel_sizes(raw_dir.rglob("*pixel_size*.csv"))
    cases, skipped = [], []
    for annotation in sorted(raw_dir.rglob(f"*{ANNOTATION_SUFFIX}")):
        image = annotation.with_name(annotation.name[: -len(ANNOTATION_SUFFIX)] + ".png")
        if not image.is_file():
            skipped.append(f"{annotation}: annotation without its image {image.name}")
            continue
        name = strip_suffix(image)
        cases.append(RawCase(name, patient_of(name), "", image, annotation, pixel_size=sizes.get(image.name, math.nan)))
    return cases, skipped


def unannotated_images(raw_dir: Path) -> list[Path]:
    """Images with no annotation beside them (the challenge test set): not preprocessed, predictable."""
    return sorted(
        p
        for p in raw_dir.rglob("*.png")
        if not p.name.endswith(ANNOTATION_SUFFIX) and not p.with_name(p.stem + ANNOTATION_SUFFIX).is_file()
    )


def load_case(raw: RawCase, config: Mapping[str, Any]) -> LoadedCase:
    """Read an image, fill its annotation into a head mask, and attach the CSV pixel size (NaN if unknown)."""
    image, meta = load_image(raw.image_path)
    meta = meta.with_spacing((raw.pixel_size, raw.pixel_size))
    labels = None
    if raw.label_path is not None:
        labels = annotation_mask(raw.label_path)
        if labels.shape != image.shape:
            raise MedpromptError(
                f"{raw.label_path}: annotation shape {labels.shape[1:]} differs from image {raw.image_path.name} {image.shape[1:]}"
            )
    return LoadedCase(raw, image, meta, labels)


def input_case(path: Path) -> RawCase:
    """A single unannotated image to predict, named after its file; pixel size from a CSV beside it or one level up."""
    name = strip_suffix(path)
    csvs = [*path.parent.glob("*pixel_size*.csv"), *path.parent.parent.glob("*pixel_size*.csv")]
    size = pixel_sizes(csvs).get(path.name, math.nan)
    return RawCase(name, patient_of(name), "", path, None, "test", pixel_size=size)


GROUND_TRUTH = GroundTruthLayout("hc18", r"^\d+_\d*HC$", annotation_suffix=ANNOTATION_SUFFIX,
                                 read_annotation=annotation_mask, reference=hc18_reference)
