"""The run directory: everything a training run leaves, and loading a trained model back.

    config.yaml                 resolved config: training recipe, dataset, backbone + sha256
    train_boxes.csv             the training slices (the few-shot subset) and their boxes
    train_log.csv               one row per epoch: loss terms, box fills, health, held-out box IoU
    resume_state.pt             resumable state (written every epoch)
    method.safetensors          the selected epoch's learned tensors of the method (present once training ends)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from medprompt.backbones import Backbone, load_backbone
from medprompt.common.config import read_yaml
from medprompt.common.config_rules import lookup
from medprompt.common.errors import MedpromptError
from medprompt.methods import Method, build_method
from medprompt.methods.refinement import RefineConfig

CONFIG = "config.yaml"
BOXES = "train_boxes.csv"
LOG = "train_log.csv"
RESUME_STATE = "resume_state.pt"
WEIGHTS = "method.safetensors"
RECORDED_KEYS = ("dataset.target_label", "dataset.slice_shape", "backbone.id", "backbone.checkpoint_sha256",
                 "train.method", "train.supervision")


def weights_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file's bytes with its metadata keys in sorted order, so identical weights give identical files
    (safetensors writes metadata in hash order, which changes from one process to the next)."""
    data = save(tensors, metadata=metadata)
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    ordered = {"__metadata__": dict(sorted(header.pop("__metadata__", {}).items())), **header}
    text = json.dumps(ordered, separators=(",", ":")).encode()
    return data[:8] + text.ljust(size) + data[8 + size :]


@dataclass
class TrainedModel:
    """A frozen backbone, a trained method and the run's second-pass setting, ready to predict; `orientations`:
    the first pass is averaged over the slices in these orientations (`predict --orientations`)."""

    config: dict[str, Any]
    backbone: Backbone
    method: Method
    refine: RefineConfig
    orientations: str = "none"


def finished_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The recorded config of a run whose training has finished (read without loading any model)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise MedpromptError(f"{run_dir}: not a run directory (no {CONFIG}); train one with `medprompt train`")
    if not (run_dir / WEIGHTS).is_file():
        raise MedpromptError(f"{run_dir}: training has not finished (no {WEIGHTS}); rerun `medprompt train ... --resume`")
    config = read_yaml(run_dir / CONFIG)
    missing = [key for key in RECORDED_KEYS if lookup(config, key) is None]
    if missing:
        raise MedpromptError(f"{run_dir / CONFIG}: incomplete run config (no {missing[0]}); train the run again")
    return config


def load_trained(run_dir: str | os.PathLike, device: torch.device, checkpoint: str | os.PathLike | None = None,
                 backbone: Backbone | None = None, engine: str = "auto") -> TrainedModel:
    """Load a finished run: its backbone (checkpoint verified by sha256, its encoder run by `engine`; `backbone`, one
    already loaded, is used as it is when it is the run's) and its method's learned tensors."""
    run_dir = Path(run_dir)
    config = finished_run_config(run_dir)
    recorded = config["backbone"]
    path = checkpoint if checkpoint is not None else recorded.get("checkpoint")
    if backbone is None or backbone.backbone_id != recorded["id"]:
        backbone = load_backbone(recorded["id"], path, device, engine=engine)
    if backbone.checkpoint_sha256 != recorded["checkpoint_sha256"]:
        raise MedpromptError(
            f"{path or 'bundled weights'}: sha256 {backbone.checkpoint_sha256[:12]}... differs from the checkpoint this run "
            f"was trained with ({recorded['checkpoint_sha256'][:12]}...); pass --checkpoint with that file"
        )
    method = build_method(backbone, config["train"])
    try:
        method.load_trainable_state(load_file(str(run_dir / WEIGHTS), device=str(backbone.device)))
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in safetensors or in torch; one message for both
        reason = str(exc).strip().splitlines()[0][:160]
        raise MedpromptError(f"{run_dir / WEIGHTS}: damaged or not this run's {method.name} weights ({reason}); "
                             "train the run again") from None
    return TrainedModel(config, backbone, method.eval(), RefineConfig.from_train_config(config["train"]))
