"""Reading model checkpoints safely, with one-line errors that name the file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from medprompt.common.errors import MedpromptError

_EXAMPLES = 3


def sha256_file(path: str | os.PathLike, block_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in blocks so a 375 MB checkpoint never sits in memory twice."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(block_size):
            digest.update(block)
    return digest.hexdigest()


def read_state_dict(path: str | os.PathLike, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Load a state dict from a `.pth` (weights only) or `.safetensors` file.

    A dict that wraps the state dict under `model` (as training scripts save) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise MedpromptError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise MedpromptError(f"{path}: checkpoint file is empty")
    if path.suffix == ".safetensors":
        return _read_safetensors(path, device)
    try:
        obj = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt file can fail anywhere inside the unpickler
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MedpromptError(
            f"{path}: not a readable PyTorch checkpoint (truncated, corrupted or not saved by torch.save): {reason}"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MedpromptError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _read_safetensors(path: Path, device: str | torch.device) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise MedpromptError(f"{path}: not a readable safetensors file ({exc})") from None


def load_into(model: nn.Module, state_dict: dict[str, torch.Tensor], path: str | os.PathLike, architecture: str) -> None:
    """Load weights strictly; a mismatch names how many keys are missing / unexpected and a few of them."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        raise MedpromptError(
            f"{path}: not a {architecture} checkpoint: {len(missing)} keys missing "
            f"(e.g. {', '.join(missing[:_EXAMPLES]) or '-'}), {len(unexpected)} unexpected "
            f"(e.g. {', '.join(unexpected[:_EXAMPLES]) or '-'})"
        )
    wrong = [k for k, v in expected.items() if tuple(state_dict[k].shape) != tuple(v.shape)]
    if wrong:
        k = wrong[0]
        raise MedpromptError(
            f"{path}: not a {architecture} checkpoint: {len(wrong)} tensors have other shapes "
            f"(e.g. {k}: {tuple(state_dict[k].shape)} instead of {tuple(expected[k].shape)})"
        )
    model.load_state_dict(state_dict, strict=True)
