"""`medprompt export RUN --out DIR`: a run as a self-contained folder in the Hugging Face Hub layout.

    README.md                   the model card (`model_card`)
    config.json                 the run's config without paths, `library_name: medprompt`, the weights' sha256
    model.safetensors           the method's learned tensors, byte for byte the run's
    test_tensors.safetensors    a synthetic input slice and the probabilities the run gives it
    train_boxes.csv             only with --include-boxes

The folder is written under a temporary name and renamed when complete. Before that, it is loaded back the way
`medprompt predict` loads it, and its probabilities on the test slice must equal the run's bit for bit.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import save_file

from medprompt import __version__
from medprompt.backbones import Backbone
from medprompt.backbones.checkpoint import sha256_file
from medprompt.common.errors import MedpromptError
from medprompt.common.output_paths import check_output_folder
from medprompt.export.model_card import Metric, model_card
from medprompt.export.onnx_segmenter import check_onnx_path, export_onnx
from medprompt.inference.segment import segment_images
from medprompt.methods.run_dir import (
    BOXES,
    CONFIG,
    EXPORT_CONFIG,
    EXPORT_WEIGHTS,
    LIBRARY,
    WEIGHTS,
    TrainedModel,
    finished_run_config,
    load_trained,
)

TEST_TENSORS = "test_tensors.safetensors"
CARD = "README.md"
FORMAT_VERSION = 1


def synthetic_slice(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A synthetic grey slice [1,H,W] uint8 (a bright disc on a smooth background with noise): no patient data."""
    rows, cols = np.mgrid[: size[0], : size[1]]
    disc = ((rows - size[0] * 0.45) ** 2 + (cols - size[1] * 0.55) ** 2) < (min(size) * 0.12) ** 2
    background = 40 + 60 * cols / size[1] + np.random.default_rng(seed).normal(0, 8, size)
    return np.clip(background + 120 * disc, 0, 255).astype(np.uint8)[None]


def hub_config(config: dict, weights_sha256: str) -> dict:
    """`config.json`: the Hub's keys, then the run config's sections with the paths taken out."""
    dataset = {k: v for k, v in config["dataset"].items() if k != "path"}
    backbone = {k: v for k, v in config["backbone"].items() if k != "checkpoint"}
    preprocessing = dataset.get("preprocessing") or {}
    return {"library_name": LIBRARY, "format_version": FORMAT_VERSION, "model_sha256": weights_sha256,
            "method": config["train"]["method"],
            "target": {"name": preprocessing.get("target"), "label": dataset["target_label"]},
            "input": {"slice_shape": dataset["slice_shape"], "source_kinds": dataset.get("source_kinds")},
            "dataset": dataset, "backbone": backbone, "train": config["train"],
            "medprompt_version": config.get("medprompt_version", __version__)}


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike, device: torch.device, engine: str = "auto",
               include_boxes: bool = False, metrics: list[Metric] | None = None, license_id: str = "other",
               checkpoint: str | os.PathLike | None = None, onnx: str | os.PathLike | None = None) -> Path:
    """Write the export of a finished run into `out` (a new or empty folder) and check it loads back;
    `checkpoint`: the run's backbone checkpoint, if it has moved; `onnx`: also write the segmenter's ONNX graphs
    there (`onnx_segmenter`)."""
    run_dir, out = Path(run_dir), check_output_folder(out, "--out")
    if not (run_dir / CONFIG).is_file():
        raise MedpromptError(f"{run_dir}: not a run folder (no {CONFIG}); export a folder written by `medprompt train`")
    config = finished_run_config(run_dir)
    if onnx is not None:
        check_onnx_path(onnx)
    if out.exists() and any(out.iterdir()):
        raise MedpromptError(f"--out {out}: not empty; export into a new folder")
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        shutil.copyfile(run_dir / WEIGHTS, partial / EXPORT_WEIGHTS)
        sha = sha256_file(partial / EXPORT_WEIGHTS)
        (partial / EXPORT_CONFIG).write_text(json.dumps(hub_config(config, sha), indent=2) + "\n")
        boxes = len(pd.read_csv(run_dir / BOXES)) if (run_dir / BOXES).is_file() else 0
        if include_boxes and boxes:
            shutil.copyfile(run_dir / BOXES, partial / BOXES)
        image = synthetic_slice(tuple(config["dataset"]["slice_shape"]))
        model = load_trained(run_dir, device, checkpoint, engine=engine)
        expected = probabilities(model, image)
        save_file({"image": image, "probabilities": expected}, str(partial / TEST_TENSORS))
        check_export(partial, image, expected, model.backbone)
        if onnx is not None:
            export_onnx(model, onnx)
        (partial / CARD).write_text(model_card(config, out.name, license_id, boxes, metrics or []))
        if out.exists():
            out.rmdir()
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def probabilities(model: TrainedModel, image: np.ndarray) -> np.ndarray:
    """What `medprompt predict` computes for preprocessed slices [N,H,W] uint8 with `model`."""
    return segment_images(model.method, image, batch_size=1, progress=False, refine_config=model.refine).probs


def check_export(folder: Path, image: np.ndarray, expected: np.ndarray, backbone: Backbone) -> None:
    """The export, loaded back as `predict` loads it, must give the run's probabilities bit for bit."""
    got = probabilities(load_trained(folder, backbone.device, backbone=backbone), image)
    if not np.array_equal(got, expected):
        raise MedpromptError(f"{folder}: the exported model's output differs from the run's (max "
                             f"{float(np.abs(got - expected).max()):.2e}); the export is not written")
