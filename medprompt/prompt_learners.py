"""Registry of prompt learners: modules that turn image embeddings into SAM prompt embeddings.

Every learner maps embeddings [B,256,64,64] to (sparse [B,T,256], dense [B,256,64,64]),
the two inputs of the mask decoder, so any learner trains and predicts the same way.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from medprompt.errors import MedpromptError

PROMPT_LEARNERS: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class decorator adding a prompt learner under `name`."""

    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        PROMPT_LEARNERS[name] = factory
        return factory

    return add


def available_prompt_learners() -> list[str]:
    """Names of the registered prompt learners, the built-in ones included."""
    import medprompt.prompt_module  # noqa: F401  (registers the built-in learners)

    return sorted(PROMPT_LEARNERS)


def build_prompt_learner(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate a registered prompt learner."""
    if name not in available_prompt_learners():
        raise MedpromptError(f"unknown prompt learner {name!r}; available: {sorted(PROMPT_LEARNERS)}")
    return PROMPT_LEARNERS[name](**kwargs)
