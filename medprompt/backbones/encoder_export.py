"""The frozen image encoder exported to ONNX once per checkpoint, for the inference engines that read ONNX.

The file lives in the user's cache folder (`MEDPROMPT_CACHE_DIR`, else
`$XDG_CACHE_HOME/medprompt`, else `~/.cache/medprompt`) under
`encoders/<backbone-id>-<sha256 prefix>/encoder.onnx`, beside `encoder.json`,
which records its own sha256. It is written under a temporary name and
renamed when complete; a file whose checksum no longer matches its record is
exported again, never trusted. Nothing is exported at import time.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from medprompt.backbones.checkpoint import sha256_file
from medprompt.backbones.input_spec import InputSpec
from medprompt.common.atomic import atomic_path
from medprompt.common.errors import MedpromptError
from medprompt.common.locking import exclusive

OPSET = 17
ONNX_FILE = "encoder.onnx"
RECORD_FILE = "encoder.json"


class EncoderOwner(Protocol):
    """What exporting and running an encoder needs of a backbone (`base.Backbone` has it)."""

    image_encoder: nn.Module
    spec: InputSpec
    backbone_id: str
    checkpoint_sha256: str

    @property
    def device(self) -> torch.device: ...

    @property
    def input_size(self) -> int: ...


def cache_root() -> Path:
    """medprompt's per-user cache folder (exported encoders and their measurements)."""
    if os.environ.get("MEDPROMPT_CACHE_DIR"):
        return Path(os.environ["MEDPROMPT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "medprompt"


def export_folder(backbone: EncoderOwner) -> Path:
    """Where this backbone's exported encoder lives: one folder per backbone and checkpoint."""
    if not backbone.checkpoint_sha256:
        raise MedpromptError(f"backbone {backbone.backbone_id!r} has no checkpoint checksum; only the torch engine "
                             "runs a backbone that was not loaded from weights")
    return cache_root() / "encoders" / f"{backbone.backbone_id}-{backbone.checkpoint_sha256[:16]}"


def exported_encoder(backbone: EncoderOwner) -> Path:
    """The backbone's encoder as an ONNX file (batch axis dynamic), exported now when absent or damaged."""
    folder = export_folder(backbone)
    onnx_path, record_path = folder / ONNX_FILE, folder / RECORD_FILE
    with exclusive(folder, "medprompt encoder export", wait=True):
        problem = _problem(onnx_path, record_path, backbone)
        if problem is None:
            return onnx_path
        if onnx_path.exists() or record_path.exists():
            warnings.warn(f"{onnx_path}: {problem}; exporting it again")
        record_path.unlink(missing_ok=True)
        with atomic_path(onnx_path) as tmp:
            _export(backbone, tmp)
        record = {"sha256": sha256_file(onnx_path), "bytes": onnx_path.stat().st_size, "opset": OPSET,
                  "backbone_id": backbone.backbone_id, "checkpoint_sha256": backbone.checkpoint_sha256,
                  "input_size": backbone.input_size, "torch": torch.__version__}
        with atomic_path(record_path) as tmp:
            tmp.write_text(json.dumps(record, indent=1))
    return onnx_path


def _problem(onnx_path: Path, record_path: Path, backbone: EncoderOwner) -> str | None:
    """Why the exported file cannot be used as it is, or None when it can."""
    if not onnx_path.is_file():
        return "not exported yet"
    try:
        record: dict[str, Any] = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return f"its record {record_path.name} is missing or unreadable"
    if record.get("checkpoint_sha256") != backbone.checkpoint_sha256 or record.get("opset") != OPSET:
        return "exported from another checkpoint or ONNX opset"
    if onnx_path.stat().st_size != record.get("bytes") or sha256_file(onnx_path) != record.get("sha256"):
        return "damaged (its sha256 differs from the one recorded at export)"
    return None


def _export(backbone: EncoderOwner, path: Path) -> None:
    """Trace the encoder on the CPU at batch 1, with a dynamic batch axis (input `frames`, output `embeddings`)."""
    try:
        import onnx  # noqa: F401 - torch's exporter needs it; a clear line here beats its traceback
    except ImportError:
        raise MedpromptError("exporting the encoder needs the onnx package: pip install onnx "
                             "(or use --engine torch)") from None
    encoder = backbone.image_encoder
    frames = torch.zeros(1, 3, backbone.input_size, backbone.input_size, device=backbone.device)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the tracer's notes on Python control flow, which the traced graph fixes
        torch.onnx.export(encoder, (frames,), str(path), dynamo=False, opset_version=OPSET, input_names=["frames"],
                          output_names=["embeddings"], dynamic_axes={"frames": {0: "batch"}, "embeddings": {0: "batch"}})
