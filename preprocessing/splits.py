"""Seeded splits by patient, sized like the paper's and scaled to the number of patients present."""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import SPLITS


def split_counts(n: int, sizes: Mapping[str, int]) -> dict[str, int]:
    """Share `n` patients out in proportion to `sizes` (largest remainder), at least one per split when possible.

    `sizes` are the paper's counts, e.g. {'train': 350, 'val': 50, 'test': 100};
    with exactly that many patients the counts are reproduced.
    """
    unknown = sorted(set(sizes) - set(SPLITS))
    if unknown or not sizes or any(v < 0 for v in sizes.values()) or sum(sizes.values()) == 0:
        raise MedpromptError(f"split sizes {dict(sizes)} must be non-negative counts for {list(SPLITS)}, not all 0")
    names = [s for s in SPLITS if sizes.get(s, 0) > 0]
    total = sum(sizes[s] for s in names)
    exact = {s: n * sizes[s] / total for s in names}
    counts = {s: int(exact[s]) for s in names}
    for s in sorted(names, key=lambda s: exact[s] - counts[s], reverse=True)[: n - sum(counts.values())]:
        counts[s] += 1
    if n >= len(names):
        for s in names:
            if counts[s] == 0:
                donor = max(names, key=lambda d: counts[d])
                counts[donor] -= 1
                counts[s] = 1
    return counts


def assign_splits(patients: Iterable[str], sizes: Mapping[str, int], seed: int) -> dict[str, str]:
    """Map each patient to a split: a seeded shuffle of the sorted patients cut into `split_counts` chunks."""
    patients = sorted(set(patients))
    counts = split_counts(len(patients), sizes)
    order = np.random.default_rng(seed).permutation(len(patients))
    assignment: dict[str, str] = {}
    start = 0
    for split in SPLITS:
        for i in order[start : start + counts.get(split, 0)]:
            assignment[patients[i]] = split
        start += counts.get(split, 0)
    return assignment
