"""Registry of segmentation methods on a frozen backbone: one module each, one YAML each in configs/methods/.

Every `Method` subclass with a `name` in a module of this package is registered when the package loads.

    conv_fc       the paper's prompt module: image embedding -> prompt embeddings (2,433,984 parameters)
    ptsam         PTSAM: learnable tokens in the mask decoder's token stream (8 tokens: 2,048 parameters), and
                  optionally in every attention block of the image encoder (encoder_vpt)
    sam_sp        SAM-SP: self-prompting with a LoRA-tuned mask decoder and self-distillation
    box_prompted  the backbone prompted with the ground-truth boxes: the upper bound, nothing learned
    unet          baseline: MONAI's UNet on the slices, no backbone in the loop
    unetr         baseline, TransUNet-like: MONAI's UNETR (a ViT-B/16 encoder and a convolutional decoder)
    autosam       AutoSAM: a CNN turns the slice into the decoder's dense prompt embedding
    persam        PerSAM: training-free, location priors from one reference slice's mask
    persam_f      PerSAM-F: PerSAM plus two learned weights mixing the decoder's three masks
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from medprompt.backbones import Backbone
from medprompt.common.errors import MedpromptError
from medprompt.methods.base import PROMPT_OFFSETS, READS, Method, NetworkMethod, PromptMethod, Slices, prompt_offset

METHODS: dict[str, type[Method]] = {}
DEFAULT_METHOD = "conv_fc"


def register_method(cls: type[Method]) -> type[Method]:
    """Add a method class under its `name` (usable as a decorator)."""
    if not cls.reads or not set(cls.reads) <= set(READS):
        raise TypeError(f"method {cls.name}: reads {cls.reads!r}, not a non-empty subset of {READS}")
    METHODS[cls.name] = cls
    return cls


def _discover() -> None:
    """Register every Method subclass defined in this package's modules: a new method is one module (+ its YAML)."""
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Method) and value.__module__ == module.__name__ \
                    and "name" in vars(value):
                register_method(value)


def available_methods() -> list[str]:
    """Names of the registered methods."""
    return sorted(METHODS)


def method_class(name: str) -> type[Method]:
    if name not in METHODS:
        raise MedpromptError(f"unknown method {name!r}; available: {', '.join(available_methods())}")
    return METHODS[name]


def build_method(backbone: Backbone, train_cfg: dict[str, Any]) -> Method:
    """The configured method (`train_cfg["method"]`) on `backbone`, on the backbone's device."""
    return method_class(train_cfg["method"])(backbone, train_cfg).to(backbone.device)


_discover()  # last: the package's other modules (run folders, slice inputs) import the registry above

__all__ = ["DEFAULT_METHOD", "METHODS", "PROMPT_OFFSETS", "READS", "Method", "NetworkMethod", "PromptMethod", "Slices",
           "available_methods", "build_method", "method_class", "prompt_offset", "register_method"]
