"""Shared fixtures: a small synthetic preprocessed dataset, a random tiny-backbone checkpoint, both embedded,
a phantom ACDC download taken through preprocess, embed, train and predict, and three real ACDC patients
embedded with LiteMedSAM."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from helpers import SHARED_DATA, backbone_args, tiny_backbone_args
from medprompt.cli.main import main
from medprompt.data.dataset import PreprocessedDataset, write_dataset
from preprocessing.phantoms import write_acdc
from tiny_backbone import build_tiny_backbone


def pytest_configure(config) -> None:
    """Exported encoders and engine measurements go to a folder of this test session, never the user's cache; the
    workers of `pytest -n N` share their controller's, and each takes an equal share of the cores."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        os.environ["MEDPROMPT_CACHE_DIR"] = tempfile.mkdtemp(prefix="medprompt_cache_")
    else:
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_unconfigure(config) -> None:
    """The controller removes the session's cache folder, so that test runs leave nothing in the temp folder."""
    if "PYTEST_XDIST_WORKER" not in os.environ and "MEDPROMPT_CACHE_DIR" in os.environ:
        shutil.rmtree(os.environ.pop("MEDPROMPT_CACHE_DIR"), ignore_errors=True)


# Files of a minute or more: under `pytest -n N --dist loadfile` they start first, so that no worker is left
# running one of them alone at the end.
LONG_FILES = ("test_demo.py", "test_distributed.py", "test_export.py", "test_methods_on_lite_medsam.py")


def pytest_collection_modifyitems(config, items) -> None:
    """The long files first (a stable sort: the order within and among the other files is kept)."""
    items.sort(key=lambda item: item.path.name not in LONG_FILES)


def synthetic_slices(n_cases: int, per_case: int, size: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Ellipse phantoms: label 1 (the target, absent from each case's last slice) inside a label-2 ring."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n_cases * per_case, size, size), dtype=np.uint8)
    masks = np.zeros_like(images)
    rows = []
    splits = ["train"] * max(1, n_cases - 2) + ["val", "test"]
    for c in range(n_cases):
        for k in range(per_case):
            i = c * per_case + k
            centre = (int(rng.integers(size // 3, 2 * size // 3)), int(rng.integers(size // 3, 2 * size // 3)))
            axes = (int(rng.integers(size // 8, size // 5)), int(rng.integers(size // 8, size // 5)))
            cv2.ellipse(masks[i], centre, (axes[0] + 3, axes[1] + 3), 0, 0, 360, 2, -1)
            if k < per_case - 1:
                cv2.ellipse(masks[i], centre, axes, 0, 0, 360, 1, -1)
            image = 40.0 + 150.0 * (masks[i] == 1) + 80.0 * (masks[i] == 2) + rng.normal(0, 10, (size, size))
            images[i] = np.clip(image, 0, 255).astype(np.uint8)
            rows.append({"slice_id": f"case{c:02d}_s{k:02d}", "dataset": "synthetic", "case": f"case{c:02d}",
                         "split": splits[c % len(splits)], "frame": "ED", "slice_index": k,
                         "has_target": bool((masks[i] == 1).any()), "target_area": int((masks[i] == 1).sum())})
    return pd.DataFrame(rows), images, masks


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """A preprocessed dataset of 5 cases x 4 slices of 64x64 (read-only: copy it before writing into it)."""
    root = tmp_path_factory.mktemp("synthetic") / "dataset"
    manifest, images, masks = synthetic_slices(5, 4, 64, seed=0)
    write_dataset(root, manifest, images, masks, {"target_label": 1, "dataset": "synthetic", "labels": {"1": "inner", "2": "ring"}})
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised tiny SAM backbone saved as safetensors."""
    path = tmp_path_factory.mktemp("weights") / "tiny_random.safetensors"
    backbone = build_tiny_backbone(seed=0)
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(path))
    return path


@pytest.fixture()
def dataset_copy(synthetic_dataset, tmp_path) -> Path:
    """A writable copy of the synthetic dataset."""
    target = tmp_path / "dataset"
    shutil.copytree(synthetic_dataset, target)
    return target


@pytest.fixture()
def setup(dataset_copy, tiny_checkpoint):
    """A writable synthetic dataset embedded with the random tiny backbone, and that backbone."""
    from medprompt.backbones import load_backbone
    from medprompt.backbones.embedding_cache import build_cache

    dataset = PreprocessedDataset(dataset_copy)
    backbone = load_backbone("tiny_test", tiny_checkpoint)
    build_cache(dataset, backbone, progress=False)
    return dataset, backbone


@pytest.fixture()
def embedded(dataset_copy, tiny_checkpoint) -> Path:
    """A writable synthetic dataset embedded through the command line with the random tiny backbone."""
    assert main(["embed", str(dataset_copy), *tiny_backbone_args(tiny_checkpoint)]) == 0
    return dataset_copy


@pytest.fixture()
def finished_run(embedded, tiny_checkpoint, tmp_path) -> Path:
    """A conv_fc run trained on two slices of `embedded` for one epoch."""
    run = tmp_path / "run"
    assert main(["train", str(embedded), "--out", str(run), "--shots", "2", "--epochs", "1",
                 *backbone_args(tiny_checkpoint)]) == 0
    return run


@dataclass(frozen=True)
class AcdcRun:
    """A raw phantom ACDC download, its preprocessed dataset embedded with the tiny backbone, a run trained on
    it, and that run's predictions of the dataset (volumes in the source geometry)."""

    raw: Path
    dataset: Path
    run: Path
    predictions: Path


@pytest.fixture(scope="session")
def acdc_run(tmp_path_factory, tiny_checkpoint) -> AcdcRun:
    """Read-only: copy a folder before writing into it."""
    root = tmp_path_factory.mktemp("acdc_run")
    raw = write_acdc(root / "raw", n_patients=3, seed=0)
    dataset, run, predictions = root / "dataset", root / "run", root / "predictions"
    assert main(["preprocess", "acdc", str(raw), str(dataset), "--set", "geometry.size=96"]) == 0
    assert main(["embed", str(dataset), *tiny_backbone_args(tiny_checkpoint)]) == 0
    assert main(["train", str(dataset), "--out", str(run), "--shots", "2", "--epochs", "1",
                 *backbone_args(tiny_checkpoint)]) == 0
    assert main(["predict", str(run), str(dataset), "--out", str(predictions)]) == 0
    return AcdcRun(raw, dataset, run, predictions)


LITE_ACDC_PATIENTS = ("patient022", "patient024", "patient063")  # the samples' three smallest volumes (7, 8, 8 slices at ED)


@pytest.fixture(scope="session")
def lite_acdc(tmp_path_factory) -> Path:
    """Three real ACDC patients preprocessed (one per split) and embedded with the installed LiteMedSAM
    (read-only: copy it before writing into it)."""
    root = tmp_path_factory.mktemp("lite_acdc")
    for patient in LITE_ACDC_PATIENTS:
        shutil.copytree(SHARED_DATA / "ACDC" / "training" / patient, root / "ACDC" / "training" / patient)
    dataset = root / "dataset"
    assert main(["preprocess", "acdc", str(root / "ACDC"), str(dataset),
                 "--set", "splits.sizes={train: 1, val: 1, test: 1}"]) == 0
    assert main(["embed", str(dataset)]) == 0
    return dataset


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield
