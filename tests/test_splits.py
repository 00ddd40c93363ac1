"""Patient splits: the paper's sizes, scaled down proportionally, seeded."""

from __future__ import annotations

import pytest

from medprompt.common.errors import MedpromptError
from preprocessing.splits import assign_splits, split_counts

CAMUS = {"train": 350, "val": 50, "test": 100}
HC18 = {"train": 507, "val": 77, "test": 148}


def test_paper_sizes_are_reproduced_exactly():
    assert split_counts(500, CAMUS) == CAMUS
    assert split_counts(732, HC18) == HC18
    assert split_counts(100, {"train": 90, "val": 10}) == {"train": 90, "val": 10}


def test_smaller_folders_are_scaled_with_one_per_split():
    assert split_counts(50, CAMUS) == {"train": 35, "val": 5, "test": 10}
    assert split_counts(3, CAMUS) == {"train": 1, "val": 1, "test": 1}
    assert split_counts(12, {"train": 90, "val": 10}) == {"train": 11, "val": 1}
    assert split_counts(1, CAMUS) == {"train": 1, "val": 0, "test": 0}


def test_assignment_is_seeded_and_by_patient():
    patients = [f"p{i:03d}" for i in range(40)]
    first = assign_splits(patients, CAMUS, seed=0)
    assert first == assign_splits(list(reversed(patients)), CAMUS, seed=0)
    assert first != assign_splits(patients, CAMUS, seed=1)
    assert sorted(first) == patients
    assert list(first.values()).count("test") == 8


def test_bad_sizes_are_refused():
    with pytest.raises(MedpromptError, match="split sizes"):
        split_counts(10, {"training": 5})
