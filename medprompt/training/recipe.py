"""The training recipe: `configs/train.yaml` (then the method's YAML, the user's file and `--set`), checked and typed.

Each section is a dataclass in the module that uses it, with its own `--set` rules (`refine`: the second pass,
`augment`, `selection`, `collapse`, `loss`: the box losses); the top-level keys are here. The trainer reads a
`TrainConfig`; the plain mapping is what a run records and what a method is built from.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from medprompt.common.config import (
    apply_overrides,
    bundled_config_path,
    load_config,
    merge,
    read_yaml,
    user_config_path,
)
from medprompt.common.config_rules import FRACTION, Rule, check_config
from medprompt.common.device import PRECISIONS
from medprompt.common.errors import MedpromptError
from medprompt.methods import DEFAULT_METHOD, PROMPT_OFFSETS, available_methods
from medprompt.methods.orientations import ORIENTATION_SETS
from medprompt.methods.refinement import RefineConfig
from medprompt.methods.run_dir import CONFIG
from medprompt.training.augmentation import AugmentConfig
from medprompt.training.box_losses import BoxLossConfig
from medprompt.training.collapse import CollapseConfig
from medprompt.training.selection import SelectionConfig
from medprompt.training.supervision import SUPERVISIONS, Supervision

SECTIONS = {"refine": RefineConfig, "augment": AugmentConfig, "selection": SelectionConfig,
            "collapse": CollapseConfig, "loss": BoxLossConfig}
TRAIN_RULES = {
    "prompt_offset": Rule("choice", choices=PROMPT_OFFSETS), "start_box": Rule("numbers", 0, length=4, nullable=True),
    "supervision": Rule("choice", choices=tuple(SUPERVISIONS)),
    "epochs": Rule("int", 1), "max_steps": Rule("int", 1, nullable=True), "batch_size": Rule("int", 1),
    "lr": Rule("number", 1e-12),
    "weight_decay": Rule("number", 0), "lr_step_at": FRACTION, "lr_gamma": Rule("number", 1e-12, 1),
    "shots": Rule("int", 1, nullable=True), "seed": Rule("int", 0), "subset": Rule("int", 0, nullable=True), "label": Rule("int", 0, nullable=True),
    "orientations": Rule("choice", choices=tuple(ORIENTATION_SETS)),
    "min_target_area": Rule("int", 1), "cpu_precision": Rule("choice", choices=PRECISIONS),
    **{key: rule for name, section in SECTIONS.items() for key, rule in section.section_rules(name).items()},
}


@dataclass(frozen=True)
class TrainConfig:
    """A checked training config: the schedule and its typed sections, and the mapping it came from (`values`)."""

    method: str
    supervision: str
    epochs: int
    max_steps: int | None
    batch_size: int
    lr: float
    weight_decay: float
    lr_step_at: float
    lr_gamma: float
    seed: int
    orientations: str
    min_target_area: int
    cpu_precision: str
    refine: RefineConfig
    augment: AugmentConfig
    selection: SelectionConfig
    collapse: CollapseConfig
    loss: BoxLossConfig
    values: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_mapping(cls, train_cfg: Mapping[str, Any]) -> TrainConfig:
        """Check `train_cfg` against every rule (the method's included) and type it."""
        check_config(train_cfg, {"method": Rule("choice", choices=tuple(available_methods())), **TRAIN_RULES})
        scalars = {name: train_cfg.get(name) for name in cls.__dataclass_fields__
                   if name not in SECTIONS and name != "values"}
        sections = {name: section.from_mapping(train_cfg.get(name)) for name, section in SECTIONS.items()}
        return cls(**scalars, **sections, values=dict(train_cfg))

    def epochs_for(self, slices: int) -> int:
        """The epochs to train on `slices` training slices: `epochs`, fewer where they would take more than
        `max_steps` steps (an epoch shows each slice once, `batch_size` at a time)."""
        if self.max_steps is None:
            return self.epochs
        return max(1, min(self.epochs, self.max_steps // math.ceil(slices / self.batch_size)))

    def supervision_strategy(self) -> Supervision:
        """The registered supervision this run learns with."""
        return SUPERVISIONS[self.supervision](self.loss)


def load_train_config(method: str | None = None, path: str | os.PathLike | None = None,
                      overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """configs/train.yaml, then the method's configs/methods/NAME.yaml, then the user's file and overrides.

    The method is `method` (`--method`), else the one the file or the overrides name, else the default.
    """
    name = method or load_config("train", path, overrides).get("method") or DEFAULT_METHOD
    if not isinstance(name, str) or name not in available_methods():
        raise MedpromptError(f"--method {name}: unknown; available: {', '.join(available_methods())}")
    config = merge(read_yaml(bundled_config_path("train")), read_yaml(bundled_config_path(f"methods/{name}")))
    if path is not None:
        config = merge(config, read_yaml(user_config_path(path)))
    return {**apply_overrides(config, overrides), "method": name}


def resumed_train_config(run_dir: str | os.PathLike, path: str | os.PathLike | None = None,
                         overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The training settings a run recorded, changed only by what the user gives again."""
    recorded = Path(run_dir) / CONFIG
    if not recorded.is_file():
        raise MedpromptError(f"{run_dir}: nothing to resume (no {CONFIG})")
    config = read_yaml(recorded).get("train")
    if not isinstance(config, dict):
        raise MedpromptError(f"{recorded}: no `train` section; this run cannot be resumed")
    config.setdefault("cpu_precision", "fp32")  # runs recorded before these settings trained in fp32 on a CPU,
    config.setdefault("orientations", "none")   # on their slices as they are
    if path is not None:
        config = merge(config, read_yaml(user_config_path(path)))
    return apply_overrides(config, overrides)


def setting_differences(recorded: Any, current: Any, prefix: str = "") -> list[str]:
    """'key: recorded A, now B' for every leaf that differs between two nested configs."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        return [line for key in dict.fromkeys([*recorded, *current])
                for line in setting_differences(recorded.get(key), current.get(key), f"{prefix}{key}.")]
    if recorded != current:
        return [f"{prefix.rstrip('.')}: recorded {recorded!r}, now {current!r}"]
    return []
