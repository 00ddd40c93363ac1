"""Registry of prompt learners: modules that turn image embeddings into SAM prompt embeddings.

Every learner maps embeddings [B,256,64,64] to (sparse [B,T,256], dense [B,256,64,64]),
the two inputs of the mask decoder, so any learner trains and predicts the same way.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from medprompt.errors import MedpromptError
from medprompt.prompt_module import ConvFCPromptModule

PROMPT_LEARNERS: dict[str, Callable[..., nn.Module]] = {"conv_fc": ConvFCPromptModule}


def register_prompt_learner(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add a prompt learner (a module class or factory) under `name`."""
    PROMPT_LEARNERS[name] = factory


def available_prompt_learners() -> list[str]:
    """Names of the registered prompt learners."""
    return sorted(PROMPT_LEARNERS)


def build_prompt_learner(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate a registered prompt learner."""
    if name not in PROMPT_LEARNERS:
        raise MedpromptError(f"unknown prompt learner {name!r}; available: {available_prompt_learners()}")
    return PROMPT_LEARNERS[name](**kwargs)
