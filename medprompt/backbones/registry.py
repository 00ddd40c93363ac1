"""The registry of backbones, and loading one with its weights (packaged or the user's file).

A checkpoint given without a backbone name is recognised from its state-dict keys.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from medprompt.backbones import lite_medsam, medsam_vit_b
from medprompt.backbones.base import Backbone
from medprompt.backbones.checkpoint import load_into, read_state_dict, sha256_file
from medprompt.backbones.entry import BackboneEntry
from medprompt.common.errors import MedpromptError

BACKBONES: dict[str, BackboneEntry] = {}
DEFAULT_BACKBONE = lite_medsam.NAME
IGNORED_KEYS = ("pixel_mean", "pixel_std")  # SAM's pixel normalisation buffers: MedSAM's inference does not use them


def register_backbone(entry: BackboneEntry) -> BackboneEntry:
    """Add a backbone under `entry.name` (replacing one of the same name)."""
    BACKBONES[entry.name] = entry
    return entry


for _entry in (lite_medsam.ENTRY, medsam_vit_b.ENTRY):
    register_backbone(_entry)


def get_entry(name: str) -> BackboneEntry:
    """The registered backbone `name`, or a one-line error listing the others."""
    if name not in BACKBONES:
        raise MedpromptError(f"unknown backbone {name!r}; available: {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]


def detect_backbone(state_dict: dict[str, torch.Tensor], path: str | os.PathLike) -> str:
    """The registered backbone whose signature keys the state dict holds; a one-line error when none or several do."""
    matches = [e.name for e in BACKBONES.values() if all(k in state_dict for k in e.signature)]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(sorted(BACKBONES))
    if not matches:
        raise MedpromptError(f"{path}: its keys match no registered backbone ({names}); "
                             "if it is one of them, add --backbone NAME")
    raise MedpromptError(f"{path}: its keys match several backbones ({', '.join(matches)}); add --backbone NAME")


def load_backbone(
    name: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    engine: str = "auto",
) -> Backbone:
    """Build a registered backbone, load its weights strictly, then freeze it.

    Without a checkpoint the backbone's packaged weights are used (default
    backbone: LiteMedSAM); with one and no name, the architecture is recognised
    from the checkpoint's keys. `engine` runs its encoder (`engines.ENGINE_CHOICES`;
    chosen, and exported if need be, when the encoder is first used).
    """
    if checkpoint is None:
        entry = get_entry(name or DEFAULT_BACKBONE)
        if entry.weights is None:
            raise MedpromptError(f"backbone {entry.name!r} ships no weights; pass --checkpoint ({entry.weights_hint})")
        path, digest = entry.weights.resolve()
        state_dict = read_state_dict(path)
    else:
        path = Path(checkpoint)
        state_dict = read_state_dict(path)
        digest = sha256_file(path)
        entry = get_entry(name or detect_backbone(state_dict, path))
    backbone = entry.build()
    backbone.checkpoint_sha256 = digest
    load_into(backbone, {k: v for k, v in state_dict.items() if k not in IGNORED_KEYS}, path, entry.summary)
    return backbone.to(device).freeze().use_engine(engine)


def availability(entry: BackboneEntry) -> str:
    """Whether the backbone's default weights are usable here, in words."""
    if entry.weights is None:
        return "needs --checkpoint"
    try:
        entry.weights.resolve()
    except MedpromptError as exc:
        return f"missing: {exc}"
    return "installed (sha256 verified)"


def describe_backbones() -> str:
    """The registered backbones: name, input, where the weights come from and whether they are here."""
    lines = []
    for entry in BACKBONES.values():
        default = " (default)" if entry.name == DEFAULT_BACKBONE else ""
        lines += [
            f"{entry.name}{default}",
            f"  {entry.summary}",
            f"  input:   {entry.spec.size}x{entry.spec.size}, {entry.spec.resize.replace('_', ' ')}",
            f"  weights: {entry.weights_source()}",
            f"  status:  {availability(entry)}",
        ]
    return "\n".join(lines)
