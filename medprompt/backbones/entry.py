"""What the registry knows of one backbone: how to build it, its input, how to recognise and find its weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from medprompt.backbones.base import Backbone
from medprompt.backbones.input_spec import InputSpec
from medprompt.backbones.weights import PackagedWeights


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone.

    `build` returns the architecture with random weights; `signature` lists
    state-dict keys that only this architecture has (to recognise a checkpoint);
    `weights` are the default weights when a package ships them, else
    `weights_hint` says where a user gets a checkpoint.
    """

    name: str
    summary: str
    build: Callable[[], Backbone]
    spec: InputSpec
    signature: tuple[str, ...]
    weights: PackagedWeights | None = None
    weights_hint: str = ""

    def weights_source(self) -> str:
        """Where the weights come from, in words."""
        return self.weights.describe() if self.weights is not None else f"--checkpoint: {self.weights_hint}"
