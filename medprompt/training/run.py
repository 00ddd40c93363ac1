"""A training run from the command line's request: refuse what can be refused before a backbone loads, record the
run folder (`medprompt.methods.run_dir`), train, and leave no run behind when a new one fails.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from medprompt import __version__
from medprompt.backbones import Backbone
from medprompt.backbones.embedding_cache import EmbeddingCache
from medprompt.common.atomic import atomic_path
from medprompt.common.config import dump_config, read_yaml
from medprompt.common.config_rules import check_config
from medprompt.common.distributed import Group
from medprompt.common.errors import MedpromptError
from medprompt.common.locking import LOCK, exclusive
from medprompt.common.output_paths import check_output_folder
from medprompt.data.boxes import TrainingSet, read_box_csv, select_training_set, write_box_csv
from medprompt.data.dataset import PreprocessedDataset, source_kinds
from medprompt.methods import method_class
from medprompt.methods.orientations import check_orientations
from medprompt.methods.run_dir import BOXES, CONFIG, LOG, RESUME_STATE, WEIGHTS, weights_bytes
from medprompt.training.recipe import TrainConfig, setting_differences
from medprompt.training.trainer import Trainer, training_reads


def run_config(dataset: PreprocessedDataset, backbone: Backbone, train_cfg: dict[str, Any],
               checkpoint: str | os.PathLike | None) -> dict[str, Any]:
    """The resolved config a run records: what it trained on, with what, and how."""
    return {
        "medprompt_version": __version__,
        "dataset": {
            "path": str(dataset.root.resolve()),
            "name": dataset.name,
            "fingerprint": dataset.fingerprint,
            "target_label": int(train_cfg.get("label") if train_cfg.get("label") is not None else dataset.target_label),
            "slice_shape": list(dataset.shape[1:]),
            "preprocessing": dataset.attrs.get("config"),
            "source_kinds": source_kinds(dataset.manifest),
        },
        "backbone": {
            "id": backbone.backbone_id,
            "checkpoint": str(Path(checkpoint).resolve()) if checkpoint is not None else None,
            "checkpoint_sha256": backbone.checkpoint_sha256,
        },
        "train": train_cfg,
    }


def check_run_request(dataset: PreprocessedDataset, train_cfg: dict[str, Any], run_dir: str | os.PathLike,
                      boxes_csv: str | os.PathLike | None = None, resume: bool = False) -> TrainingSet:
    """Everything that can be refused before a backbone is loaded: the run folder, the settings, the training slices."""
    run_dir = check_output_folder(run_dir, "--out")
    recipe = TrainConfig.from_mapping(train_cfg)
    method = method_class(recipe.method)
    check_config(train_cfg, method.rules)
    method.check_options(dict(train_cfg.get(method.name) or {}))
    if recipe.supervision not in method.supervisions:
        raise MedpromptError(f"--supervision {recipe.supervision}: method {method.name} learns from "
                             f"{' or '.join(method.supervisions)} only")
    if recipe.augment.enabled:
        refine = recipe.refine
        reader = f"method {method.name}" if "embeddings" in method.reads_from(train_cfg) else \
            "the second pass (refine.distill, refine.second_pass_loss)" if refine.distill or refine.second_pass_loss else None
        if reader is not None:
            raise MedpromptError(f"augment.enabled: {reader} reads cached embeddings, which cannot follow a "
                                 "transformed slice; --set augment.enabled=false")
    check_orientations(recipe.orientations, tuple(dataset.shape[1:]))
    recipe.supervision_strategy().check(dataset, boxes_csv)
    if resume:
        if not (run_dir / CONFIG).is_file():
            raise MedpromptError(f"{run_dir}: nothing to resume (no {CONFIG})")
        if not (run_dir / BOXES).is_file():
            raise MedpromptError(f"{run_dir / BOXES}: missing; the run cannot be resumed without its training boxes")
        ids = _recorded_ids(run_dir)
        unknown = [s for s in ids if s not in dataset.index_of]
        if unknown:
            raise MedpromptError(f"{run_dir / BOXES}: slice {unknown[0]!r} is not in {dataset.manifest_path}")
        return TrainingSet(np.array([dataset.index_of[s] for s in ids]), ids, read_box_csv(run_dir / BOXES, dataset))
    if (run_dir / CONFIG).exists():
        raise MedpromptError(f"{run_dir}: already holds a run; use --resume to continue it or choose another --out")
    return select_training_set(dataset, train_cfg, boxes_csv)


def train(dataset: PreprocessedDataset, backbone: Backbone, train_cfg: dict[str, Any], run_dir: str | os.PathLike,
          boxes_csv: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
          resume: bool = False, progress: bool = True, group: Group = Group()) -> Path:
    """Train (or resume) a run; returns the run directory. A method with nothing to learn only records the run.

    In a `group` of processes (torchrun) the members share each batch out; the main member holds the run
    folder for the whole group and is the only one to write into it.

    To resume with the recorded settings, pass `resumed_train_config(run_dir)` as `train_cfg`.
    """
    run_dir = Path(run_dir)
    training_set = check_run_request(dataset, train_cfg, run_dir, boxes_csv, resume)
    recipe = TrainConfig.from_mapping(train_cfg)
    method = method_class(recipe.method)
    method.check_backbone(backbone, train_cfg)
    train_cfg = with_start_box(train_cfg, training_set, backbone, tuple(dataset.shape[1:]))
    config = run_config(dataset, backbone, train_cfg, checkpoint)
    if resume:
        recorded = read_yaml(run_dir / CONFIG)
        differences = setting_differences({k: recorded.get(k) for k in ("dataset", "train")},
                                          {k: config[k] for k in ("dataset", "train")})
        if differences:
            raise MedpromptError(f"{run_dir / CONFIG}: cannot resume, {'; '.join(differences)}; resume without "
                                 "changing them, or train into a new --out")
    if (method.trainable or method.references) and "embeddings" in training_reads(method, recipe):
        EmbeddingCache(dataset, backbone.backbone_id, backbone.checkpoint_sha256)  # says what to run when missing
    made_folder = not run_dir.exists()
    try:
        with group.main_holds(exclusive(run_dir, "medprompt train")):
            if not resume and group.is_main:
                write_box_csv(training_set.boxes, run_dir / BOXES)
                dump_config(config, run_dir / CONFIG)
            if not method.trainable and not method.references:
                if not group.is_main:
                    return run_dir
                with atomic_path(run_dir / WEIGHTS) as tmp:
                    tmp.write_bytes(weights_bytes({}, {"method": method.name, "medprompt_version": __version__}))
                return run_dir
            trainer = Trainer(dataset, backbone, config, run_dir, training_set, progress, group)
            if not method.trainable:
                trainer.write_weights()
                return run_dir
            if resume and (run_dir / RESUME_STATE).exists():
                trainer.load_resume_state()
            trainer.fit(progress=progress)
    except MedpromptError:
        if not resume and group.is_main:
            discard_run(run_dir, made_folder)
        raise
    return run_dir


def discard_run(run_dir: Path, made_folder: bool) -> None:
    """Remove what a new run wrote before it failed (a collapse, a refused input), but its epoch log, which says
    what happened: nothing is left to resume, and the corrected command must not be refused as "already holds a
    run". A folder the run made, left empty, goes too."""
    for name in (CONFIG, BOXES, RESUME_STATE, WEIGHTS):
        (run_dir / name).unlink(missing_ok=True)
    if made_folder and not (run_dir / LOG).exists():
        (run_dir / LOCK).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            run_dir.rmdir()


def with_start_box(train_cfg: dict[str, Any], training_set: TrainingSet, backbone: Backbone,
                   image_size: tuple[int, int]) -> dict[str, Any]:
    """`train_cfg` with its `start_box` for `prompt_offset: training_box`: the training boxes' median, coordinate
    by coordinate, in the backbone's input frame, where the structure typically lies (one given, or recorded by a
    run being resumed, is kept)."""
    if train_cfg.get("prompt_offset") != "training_box" or train_cfg.get("start_box") is not None:
        return train_cfg
    boxes = np.concatenate([training_set.boxes[s] for s in training_set.slice_ids]).astype(np.float32)
    median = backbone.spec.boxes_to_input(torch.from_numpy(np.median(boxes, axis=0, keepdims=True)), image_size)
    return {**train_cfg, "start_box": [round(float(v), 1) for v in median[0]]}


def _recorded_ids(run_dir: Path) -> list[str]:
    return list(dict.fromkeys(pd.read_csv(run_dir / BOXES, dtype={"slice_id": str}).slice_id))
