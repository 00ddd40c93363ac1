"""Choosing the compute device and its precision."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from medprompt.common.errors import MedpromptError


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


def flush_subnormals() -> None:
    """Flush subnormal floats (below 1.2e-38) to zero in this process's CPU arithmetic. A converging model's
    gradients fill with them (the sigmoid of confident logits), and an x86 CPU computes on them about 50x slower:
    by epoch 37 of an HC18 run a training step took 1.78 s instead of 0.54 s, and it kept growing. No result
    depends on such magnitudes. A no-op where the CPU cannot flush them."""
    torch.set_flush_denormal(True)


PRECISIONS = ("auto", "fp32", "bf16")


def autocast(device: torch.device, cpu_bf16: bool = False) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; on the CPU full precision (a no-op context) unless `cpu_bf16` asks for bf16 too."""
    if device.type == "cuda" or cpu_bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_bf16_for(device: torch.device, precision: str) -> bool:
    """Whether training on `device` takes bf16 autocast on the CPU under `precision` (auto, fp32, bf16): for auto
    only where the CPU has bf16 instructions (emulated bf16 is slower than fp32); never on CUDA, whose autocast
    is bf16 already."""
    if device.type != "cpu" or precision == "fp32":
        return False
    return precision == "bf16" or cpu_has_native_bf16()


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16 among the CPU's flags (Linux; elsewhere False)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def default_batch_size(device: torch.device) -> int:
    """Slices per encoder batch: 1 on the CPU (batching only adds memory traffic there), 16 on CUDA."""
    return 16 if device.type == "cuda" else 1
