"""The run directory: everything a training run leaves, and loading a trained model back.

    config.yaml                 resolved config: training recipe, dataset, backbone + sha256
    train_boxes.csv             the training slices (the few-shot subset) and their boxes
    train_log.csv               one row per epoch: loss terms, box fills, health, held-out box IoU
    resume_state.pt             resumable state (written every epoch)
    method.safetensors          the selected epoch's learned tensors of the method (present once training ends)

A model exported for sharing (`medprompt export`, the Hugging Face Hub layout) is read here too, wherever a run
is: its `config.json` holds the run's config without paths and the checksum of its `model.safetensors`; a folder
laid out as the Hub's download cache is read through its `snapshots/<revision>/`.
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
from medprompt.backbones.checkpoint import sha256_file
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
EXPORT_CONFIG = "config.json"
EXPORT_WEIGHTS = "model.safetensors"
LIBRARY = "medprompt"
EXPORT_KEYS = ("medprompt_version", "dataset", "backbone", "train")  # the run config's sections an export keeps
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


def target_name(config: dict[str, Any]) -> str:
    """The run's structure as its preprocessing names it (`target`), else by its label value."""
    preprocessing = config["dataset"].get("preprocessing") or {}
    return str(preprocessing.get("target") or f"label {config['dataset']['target_label']}")


def model_folder(path: str | os.PathLike) -> Path:
    """The folder holding a model: a run or export folder as it is; for the Hub's download cache
    (`models--owner--name/`), the snapshot `refs/main` names, or its only one."""
    path = Path(path)
    snapshots = path / "snapshots"
    if (path / CONFIG).is_file() or (path / EXPORT_CONFIG).is_file() or not snapshots.is_dir():
        return path
    ref = path / "refs" / "main"
    revision = ref.read_text().strip() if ref.is_file() else ""
    if revision and revision == Path(revision).name and (snapshots / revision).is_dir():
        return snapshots / revision
    revisions = sorted(p for p in snapshots.iterdir() if p.is_dir())
    if len(revisions) != 1:
        raise MedpromptError(f"{path}: a Hub cache folder with {len(revisions)} snapshots and no refs/main; give "
                             "one of its snapshots/<revision> folders")
    return revisions[0]


def weights_file(folder: Path) -> Path:
    """The learned tensors' file of a run or an export folder."""
    return folder / (EXPORT_WEIGHTS if (folder / EXPORT_CONFIG).is_file() and not (folder / CONFIG).is_file()
                     else WEIGHTS)


def finished_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The recorded config of a run whose training has finished, or of an exported model (read without loading
    any model)."""
    run_dir = model_folder(run_dir)
    if not (run_dir / CONFIG).is_file() and (run_dir / EXPORT_CONFIG).is_file():
        return exported_config(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise MedpromptError(f"{run_dir}: not a run directory (no {CONFIG}) nor an exported model (no {EXPORT_CONFIG}); "
                             "train one with `medprompt train`")
    if not (run_dir / WEIGHTS).is_file():
        raise MedpromptError(f"{run_dir}: training has not finished (no {WEIGHTS}); rerun `medprompt train ... --resume`")
    config = read_yaml(run_dir / CONFIG)
    missing = [key for key in RECORDED_KEYS if lookup(config, key) is None]
    if missing:
        raise MedpromptError(f"{run_dir / CONFIG}: incomplete run config (no {missing[0]}); train the run again")
    return config


def exported_config(folder: Path) -> dict[str, Any]:
    """The run config an exported model carries (no paths in it), once its `config.json` is medprompt's and its
    weights are the ones it was exported with."""
    path = folder / EXPORT_CONFIG
    try:
        exported = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MedpromptError(f"{path}: not readable as JSON ({exc})") from None
    if not isinstance(exported, dict) or exported.get("library_name") != LIBRARY:
        raise MedpromptError(f"{path}: not a medprompt model (library_name is "
                             f"{exported.get('library_name') if isinstance(exported, dict) else None!r})")
    config = {key: exported.get(key) for key in EXPORT_KEYS}
    missing = [key for key in RECORDED_KEYS if lookup(config, key) is None]
    if missing:
        raise MedpromptError(f"{path}: incomplete exported config (no {missing[0]}); export the run again")
    weights = folder / EXPORT_WEIGHTS
    if not weights.is_file():
        raise MedpromptError(f"{folder}: an exported model without its {EXPORT_WEIGHTS}")
    if sha256_file(weights) != exported.get("model_sha256"):
        raise MedpromptError(f"{weights}: its sha256 differs from the one {EXPORT_CONFIG} records; the file is damaged "
                             "or from another export")
    config["dataset"] = {**config["dataset"], "path": None}
    config["backbone"] = {**config["backbone"], "checkpoint": None}
    return config


def load_trained(run_dir: str | os.PathLike, device: torch.device, checkpoint: str | os.PathLike | None = None,
                 backbone: Backbone | None = None, engine: str = "auto") -> TrainedModel:
    """Load a finished run: its backbone (checkpoint verified by sha256, its encoder run by `engine`; `backbone`, one
    already loaded, is used as it is when it is the run's) and its method's learned tensors."""
    run_dir = model_folder(run_dir)
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
        method.load_trainable_state(load_file(str(weights_file(run_dir)), device=str(backbone.device)))
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in safetensors or in torch; one message for both
        reason = str(exc).strip().splitlines()[0][:160]
        raise MedpromptError(f"{weights_file(run_dir)}: damaged or not this run's {method.name} weights ({reason}); "
                             "train the run again") from None
    return TrainedModel(config, backbone, method.eval(), RefineConfig.from_train_config(config["train"]))
