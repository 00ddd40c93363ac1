"""Training orientations: the training slices flipped and turned, each encoded once by the frozen encoder.

A method that reads cached embeddings cannot augment its slices per step (the
encoder is not in the loop), so the few training slices are seen in more
orientations instead: each orientation of a slice is encoded when training
starts and joins the training set with its boxes (and mask) moved alike.
An orientation is a transpose (or not) followed by flips of the rows and of
the columns; the eight of them are the square's symmetries.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from medprompt.backbones import Backbone
from medprompt.common.device import default_batch_size
from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import PreprocessedDataset
from medprompt.methods import Slices
from medprompt.methods.slice_inputs import image_slices


class Orientation(NamedTuple):
    """Transpose first (when set), then reverse the rows, then the columns."""

    transpose: bool
    flip_rows: bool
    flip_cols: bool


FLIPS = (Orientation(False, False, True), Orientation(False, True, False), Orientation(False, True, True))
ORIENTATION_SETS: dict[str, tuple[Orientation, ...]] = {
    "none": (),
    "flips": FLIPS,
    "dihedral": FLIPS + tuple(Orientation(True, rows, cols) for rows in (False, True) for cols in (False, True)),
}


def orient_array(array: np.ndarray, orientation: Orientation) -> np.ndarray:
    """`array` [..., H, W] in `orientation` (a contiguous copy)."""
    if orientation.transpose:
        array = np.swapaxes(array, -1, -2)
    if orientation.flip_rows:
        array = array[..., ::-1, :]
    if orientation.flip_cols:
        array = array[..., ::-1]
    return np.ascontiguousarray(array)


def unorient_tensor(tensor: torch.Tensor, orientation: Orientation) -> torch.Tensor:
    """A tensor [..., H', W'] computed in `orientation`, put back in the slice's own orientation."""
    if orientation.flip_cols:
        tensor = tensor.flip(-1)
    if orientation.flip_rows:
        tensor = tensor.flip(-2)
    return tensor.transpose(-1, -2) if orientation.transpose else tensor


def orient_boxes(boxes: np.ndarray, orientation: Orientation, image_size: tuple[int, int]) -> np.ndarray:
    """Inclusive pixel boxes [n,4] (x_min, y_min, x_max, y_max) of an (H, W) slice, moved as `orient_array` moves it."""
    x0, y0, x1, y1 = np.asarray(boxes, dtype=np.int64).reshape(-1, 4).T
    height, width = image_size
    if orientation.transpose:
        x0, y0, x1, y1 = y0, x0, y1, x1
        height, width = width, height
    if orientation.flip_rows:
        y0, y1 = height - 1 - y1, height - 1 - y0
    if orientation.flip_cols:
        x0, x1 = width - 1 - x1, width - 1 - x0
    return np.stack([x0, y0, x1, y1], axis=1)


class OrientedSet(NamedTuple):
    """A training set followed by its slices in each other orientation, in turn, in the same order."""

    slices: Slices
    boxes: list[np.ndarray]
    masks: np.ndarray | None


def check_orientations(orientations: str, image_size: tuple[int, int]) -> None:
    """Refuse turns and transposes of slices that are not square (they would change the slices' shape)."""
    height, width = image_size
    if height != width and any(o.transpose for o in ORIENTATION_SETS[orientations]):
        raise MedpromptError(f"orientations={orientations}: the slices are {height} x {width}; turns and transposes "
                             "need square slices, use orientations=flips")


def add_orientations(slices: Slices, dataset: PreprocessedDataset, rows: np.ndarray, boxes: list[np.ndarray],
                     masks: np.ndarray | None, orientations: str, backbone: Backbone, reads: tuple[str, ...],
                     progress: bool = True) -> OrientedSet:
    """The training `slices` (manifest `rows` of `dataset`, with their `boxes` and optional `masks`), then the same
    in each of the set `orientations` names.

    Their embeddings are encoded here, batch by batch, and kept on the CPU in the cache's precision.
    """
    chosen = ORIENTATION_SETS[orientations]
    if not chosen:
        return OrientedSet(slices, boxes, masks)
    images = dataset.images(rows)
    height, width = images.shape[-2:]
    check_orientations(orientations, (height, width))
    turned = np.concatenate([orient_array(images, o) for o in chosen])
    batch = default_batch_size(backbone.device)
    embeddings, frames = [], []
    with tqdm(total=len(turned), unit="slice", desc=f"embed {orientations}", disable=not progress) as bar:
        for start in range(0, len(turned), batch):
            part = image_slices(backbone, turned[start : start + batch], reads)
            embeddings.append(part.embeddings)
            frames.append(part.images)
            bar.update(min(batch, len(turned) - start))
    joined = Slices(_joined(slices.embeddings, embeddings), _joined(slices.images, frames), slices.image_size)
    all_boxes = boxes + [orient_boxes(b, o, (height, width)) for o in chosen for b in boxes]
    all_masks = None if masks is None else np.concatenate([masks, *(orient_array(masks, o) for o in chosen)])
    return OrientedSet(joined, all_boxes, all_masks)


def _joined(original: torch.Tensor | None, extra: list[torch.Tensor | None]) -> torch.Tensor | None:
    """`original` followed by `extra`, on the CPU in its dtype; None for a field that is not read."""
    return None if original is None else torch.cat([original, *(t.cpu().to(original.dtype) for t in extra)])
