"""Volume-level consistency of the predicted masks: each volume keeps its largest 3D connected component.

The learned prompt sees one slice at a time, and nothing in it can say "not on
this slice": a slice above the heart or below the apex gets a blob of its own,
which a clinician sees first in a viewer, which changes the volume, and which
sets the HD95. The structure itself is one connected piece across adjacent
slices, so the masks are stacked in slice order per case and only their
largest connected component (26-connectivity: a slice's mask joins its
neighbours' where they overlap or touch diagonally) is kept, with any other
component of at least `share` of its voxels (a slice whose mask splits in two
can cut the structure in pieces). A case of one slice (a 2D image) keeps the
largest blob of that slice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

CONNECTIVITY = ndimage.generate_binary_structure(3, 3)


def largest_component(volume: np.ndarray, share: float = 1.0) -> np.ndarray:
    """The largest 26-connected component of a boolean volume [S,H,W] (slices in order), and the others of at least
    `share` of its voxels; empty stays empty."""
    labels, count = ndimage.label(volume, structure=CONNECTIVITY)
    if count <= 1:
        return volume.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = int(np.argmax(sizes))
    kept = sizes >= share * sizes[largest] if share < 1 else np.zeros(len(sizes), dtype=bool)
    kept[[0, largest]] = False, True
    return kept[labels]


def consistent_masks(manifest: pd.DataFrame, masks: np.ndarray, share: float = 1.0) -> np.ndarray:
    """Masks [N,H,W] aligned with the manifest's rows, each case reduced to its largest 3D component and those of
    `share` of its size (its slices placed at their `slice_index`, so slices missing between two rows keep them
    apart); values are kept where a kept component is, zero elsewhere."""
    out = np.zeros_like(masks)
    table = manifest.reset_index(drop=True)
    for _, rows in table.groupby("case", sort=False).indices.items():
        index = table.slice_index.to_numpy()[rows].astype(int)
        index -= index.min()
        stack = np.zeros((index.max() + 1, *masks.shape[1:]), dtype=bool)
        stack[index] = masks[rows] > 0
        keep = largest_component(stack, share)[index]
        out[rows] = np.where(keep, masks[rows], 0)
    return out
