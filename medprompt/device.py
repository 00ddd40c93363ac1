"""Choosing the compute device and its precision."""

from __future__ import annotations

import contextlib

import torch

from medprompt.errors import MedpromptError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA when present, else the CPU; an unavailable CUDA request is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise MedpromptError(f"--device {name!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise MedpromptError(f"--device {name!r}: medprompt runs on auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MedpromptError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    return device


def autocast(device: torch.device, cpu_bf16: bool = False) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; on the CPU full precision (a no-op context) unless `cpu_bf16` asks for bf16 too."""
    if device.type == "cuda" or cpu_bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def default_batch_size(device: torch.device) -> int:
    """Slices per encoder batch: 1 on the CPU (batching only adds memory traffic there), 16 on CUDA."""
    return 16 if device.type == "cuda" else 1
