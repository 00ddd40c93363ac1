"""One output volume of a raw dataset, from its files to manifest rows and uint8 slices.

Each dataset module finds `RawCase`s and loads them into `LoadedCase`s; the
slicing, intensity normalisation and geometry are shared here so that every
dataset (and `predict` on unseen files) goes through the same steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from medprompt.common.errors import MedpromptError
from medprompt.data.geometry import SliceGeometry, forward_image, forward_labels, pixels_cropped_away
from medprompt.data.volume_io import VolumeMeta, read_volume
from preprocessing.intensity import check_finite, normalise, to_uint8


@dataclass(frozen=True)
class RawCase:
    """Where one output volume's image and label live, and which patient it belongs to.

    `split` is fixed in advance only where the layout says so (ACDC `testing/`);
    `pixel_size` (mm) is for formats that carry none (HC18 PNGs, from its CSV).
    """

    case: str
    patient: str
    frame: str
    image_path: Path
    label_path: Path | None
    split: str | None = None
    pixel_size: float = math.nan


@dataclass
class LoadedCase:
    """A raw case read into memory: image [slices,rows,cols], labels (uint8, same shape) or None."""

    raw: RawCase
    image: np.ndarray
    meta: VolumeMeta
    labels: np.ndarray | None


@dataclass
class CaseSlices:
    """The preprocessed slices of one case and their manifest rows."""

    rows: list[dict[str, Any]]
    images: np.ndarray
    masks: np.ndarray | None
    target_pixels_cropped: int


def label_names(config: Mapping[str, Any]) -> dict[int, str]:
    """The config's `labels` mapping with integer keys; anything else is refused naming the key."""
    labels = config.get("labels")
    try:
        names = {int(k): str(v) for k, v in labels.items()}
    except (AttributeError, TypeError, ValueError):
        names = {}
    if not names or min(names) < 1:
        raise MedpromptError(f"config key labels: {labels!r} is not allowed; it takes a mapping of label values >= 1 "
                             "to names (--set \"labels={1: liver}\")")
    return names


def target_label(config: Mapping[str, Any]) -> int:
    """The label value of the config's `target` (a label name, or a value)."""
    names = label_names(config)
    target = config["target"]
    for value, name in names.items():
        if str(target).lower() in (name.lower(), str(value)):
            return value
    choices = ", ".join(f"{name} ({value})" for value, name in names.items())
    raise MedpromptError(f"target {target!r} is not one of {config.get('dataset', 'the')} labels: {choices}; "
                         f"e.g. --set target={next(iter(names.values()))}")


def load_image(path: Path) -> tuple[np.ndarray, VolumeMeta]:
    """Read an image volume; refuse NaN intensities and a blank image (the readers already refuse zero spacings)."""
    image, meta = read_volume(path)
    check_finite(image, str(path))
    if image.size == 0 or image.min() == image.max():
        raise MedpromptError(f"{path}: blank image (every pixel is {image.min() if image.size else 'absent'}); "
                             "nothing to segment")
    return image, meta


def load_labels(path: Path, image_meta: VolumeMeta, image_path: Path, allowed: set[int]) -> np.ndarray:
    """Read a label volume, check it matches its image's shape and holds only the `allowed` values."""
    labels, meta = read_volume(path)
    if meta.shape != image_meta.shape:
        raise MedpromptError(f"{path}: label shape {meta.shape} differs from image {image_path.name} shape {image_meta.shape}")
    return check_label_values(labels, path, allowed)


def check_label_values(labels: np.ndarray, path: Path, allowed: set[int]) -> np.ndarray:
    """Return the labels as uint8, or a one-line error naming unexpected values."""
    if np.issubdtype(labels.dtype, np.floating):
        if not np.isfinite(labels).all() or not np.array_equal(labels, np.round(labels)):
            raise MedpromptError(f"{path}: label volume holds non-integer values")
    values = set(np.unique(labels).astype(np.int64).tolist())
    unexpected = sorted(values - allowed - {0})
    if unexpected:
        raise MedpromptError(f"{path}: unexpected label values {unexpected}; expected {sorted(allowed | {0})}")
    return labels.astype(np.uint8)


def default_load(raw: RawCase, config: Mapping[str, Any]) -> LoadedCase:
    """Load a case whose label file is a label map on the image grid (ACDC, CAMUS)."""
    image, meta = load_image(raw.image_path)
    labels = None
    if raw.label_path is not None:
        labels = load_labels(raw.label_path, meta, raw.image_path, set(label_names(config)))
    return LoadedCase(raw, image, meta, labels)


def preprocess_case(loaded: LoadedCase, config: Mapping[str, Any], split: str) -> CaseSlices:
    """Normalise, resample and crop/pad every slice of a case; one manifest row per slice."""
    raw, meta = loaded.raw, loaded.meta
    intensity, geometry_config = config["intensity"], config["geometry"]
    target_spacing = geometry_config.get("target_spacing")
    try:
        geometry = SliceGeometry.plan(meta.slice_shape, meta.slice_spacing,
                                      tuple(target_spacing) if target_spacing else None, int(geometry_config["size"]))
    except MedpromptError as exc:
        raise MedpromptError(f"{raw.image_path}: {exc}") from None
    normalised = normalise(loaded.image, intensity["scope"], tuple(intensity["percentiles"]))
    images = np.stack([to_uint8(forward_image(s, geometry, geometry_config["image_interpolation"])) for s in normalised])
    masks, cropped = None, 0
    target = target_label(config)
    if loaded.labels is not None:
        masks = np.stack([forward_labels(s, geometry, geometry_config["label_interpolation"]) for s in loaded.labels])
        cropped = sum(pixels_cropped_away(s == target, geometry) for s in loaded.labels)
    areas = (masks == target).sum(axis=(1, 2)) if masks is not None else np.zeros(len(images), dtype=np.int64)
    shared = {
        "dataset": config["dataset"],
        "case": raw.case,
        "patient": raw.patient,
        "split": split,
        "frame": raw.frame,
        "source_image": str(raw.image_path),
        "source_label": str(raw.label_path) if raw.label_path else "",
        **geometry.to_columns(),
        **meta.to_columns(),
    }
    rows = [
        {
            "slice_id": f"{raw.case}_{k:03d}",
            **shared,
            "slice_index": k,
            "has_target": bool(areas[k] > 0),
            "has_label": masks is not None,
            "target_area": int(areas[k]),
        }
        for k in range(len(images))
    ]
    return CaseSlices(rows, images, masks, cropped)
