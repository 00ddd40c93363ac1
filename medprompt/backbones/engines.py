"""Inference engines for the frozen image encoder's no-gradient forward: eager PyTorch, or its ONNX export run by
ONNX Runtime or OpenVINO.

On a CPU the encoder is most of a user's time (`embed`, `predict` on image
files, the box-prompted bound), and eager PyTorch runs TinyViT's windowed
attention as many small operations. An engine is measured once per checkpoint
on this machine, on the backbone's check image: its largest difference from
PyTorch and its seconds per slice, kept beside the exported file
(`measured/engines.json`). `auto` takes
the fastest engine that agrees with PyTorch within `TOLERANCE`; reduced precision
(`openvino-bf16`) is used only when asked for. Training keeps PyTorch: it needs
gradients.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from medprompt.backbones.encoder_export import EncoderOwner, export_folder, exported_encoder
from medprompt.common.atomic import atomic_path
from medprompt.common.errors import MedpromptError
from medprompt.common.locking import exclusive

TOLERANCE = 1e-4  # largest absolute embedding difference from PyTorch (embeddings' std ~0.1) that counts as agreement
MEASURE_FILE = "engines.json"
TIMED_RUNS = 3
Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class EngineKind:
    """An engine: the package it needs, the precision it computes in, and how it loads an ONNX file."""

    name: str
    package: str
    precision: str
    load: Callable[[Path, int], Runner] | None  # None: eager PyTorch, no file

    def installed(self) -> bool:
        return self.load is None or importlib.util.find_spec(self.package) is not None

    def version(self) -> str:
        return importlib.metadata.version(self.package)


def _onnxruntime(path: Path, threads: int) -> Runner:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda frames: session.run(None, {"frames": frames})[0]


def _openvino(precision: str) -> Callable[[Path, int], Runner]:
    def load(path: Path, threads: int) -> Runner:
        import openvino

        model = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                                 "INFERENCE_NUM_THREADS": threads})
        return lambda frames: model(frames)[0]

    return load


ENGINES: dict[str, EngineKind] = {kind.name: kind for kind in (
    EngineKind("torch", "torch", "fp32", None),
    EngineKind("onnxruntime", "onnxruntime", "fp32", _onnxruntime),
    EngineKind("openvino", "openvino", "fp32", _openvino("f32")),
    EngineKind("openvino-bf16", "openvino", "bf16", _openvino("bf16")),
)}
ENGINE_CHOICES = ("auto", *ENGINES)


@dataclass
class Engine:
    """A loaded engine: `run` maps frames [B,3,S,S] in the input frame to embeddings [B,256,64,64]; `max_diff` is its
    measured largest difference from PyTorch on the check image (0 for PyTorch itself)."""

    name: str
    precision: str
    max_diff: float
    run: Callable[[torch.Tensor], torch.Tensor]

    @property
    def agrees(self) -> bool:
        """Whether it agrees with PyTorch within `TOLERANCE`, so that its embeddings and PyTorch's are interchangeable."""
        return self.max_diff <= TOLERANCE


def check_frames(backbone: EncoderOwner, count: int = 1) -> torch.Tensor:
    """The backbone's check images in its input frame: a bright ellipse in a textured, graded field, seeded."""
    rng = np.random.default_rng(0)
    side = 192
    y, x = np.mgrid[:side, :side] / side
    images = []
    for k in range(count):
        ellipse = ((x - 0.5 - 0.05 * k) / 0.22) ** 2 + ((y - 0.45) / 0.3) ** 2 < 1
        images.append(60 + 80 * x + 90 * ellipse + rng.normal(0, 12, (side, side)))
    return backbone.spec.preprocess(torch.as_tensor(np.clip(images, 0, 255), dtype=torch.float32))


def resolve_engine(backbone: EncoderOwner, request: str) -> Engine:
    """The engine `request` (a name of `ENGINE_CHOICES`) for this backbone, exported and measured when first used.

    `auto` is PyTorch on CUDA (the engines here run on the CPU) and for a backbone loaded without a checkpoint;
    on the CPU the fastest installed engine that agrees with PyTorch.
    """
    if request == "torch" or (request == "auto" and (backbone.device.type != "cpu" or not backbone.checkpoint_sha256)):
        return _torch_engine(backbone)
    if backbone.device.type != "cpu":
        raise MedpromptError(f"--engine {request}: runs on the CPU only; on {backbone.device} use --engine torch or auto")
    if request != "auto":
        kind = ENGINES[request]
        if not kind.installed():
            raise MedpromptError(f"--engine {request}: the {kind.package} package is not installed "
                                 f"(pip install {kind.package}, or use --engine auto)")
        return _load(backbone, kind, measurements(backbone, [kind])[kind.name])
    kinds = [kind for kind in ENGINES.values() if kind.installed() and kind.precision == "fp32"]
    measured = measurements(backbone, kinds)
    agreeing = [kind for kind in kinds if measured[kind.name]["max_diff"] <= TOLERANCE]
    fastest = min(agreeing, key=lambda kind: measured[kind.name]["seconds_per_slice"])
    return _load(backbone, fastest, measured[fastest.name])


@torch.no_grad()
def measurements(backbone: EncoderOwner, kinds: list[EngineKind]) -> dict[str, dict[str, Any]]:
    """Each engine's max difference from PyTorch and seconds per slice on this machine with the current thread count,
    measured on the check image when not yet recorded in the export folder's `engines.json`."""
    if any(kind.load is not None for kind in kinds):
        exported_encoder(backbone)  # before the measurement's lock: the export takes the folder's own
    folder = export_folder(backbone) / "measured"
    threads = torch.get_num_threads()
    path = folder / MEASURE_FILE
    with exclusive(folder, "medprompt engine measurement", wait=True):
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError):
            recorded = {}
        keys = {kind.name: f"{kind.name} {kind.version()} threads={threads}" for kind in kinds}
        missing = [kind for kind in kinds if keys[kind.name] not in recorded]
        if missing:
            frames = check_frames(backbone).to(backbone.device)
            reference = _torch_engine(backbone).run(frames)
            for kind in missing:
                engine = _load(backbone, kind, {"max_diff": 0.0})
                recorded[keys[kind.name]] = {"max_diff": float((engine.run(frames) - reference).abs().max()),
                                             "seconds_per_slice": _seconds(engine, frames)}
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(recorded, indent=1, sort_keys=True))
    return {name: recorded[key] for name, key in keys.items()}


def _seconds(engine: Engine, frames: torch.Tensor) -> float:
    """Median seconds per slice over `TIMED_RUNS` runs after one warm-up."""
    engine.run(frames)
    times = []
    for _ in range(TIMED_RUNS):
        start = time.perf_counter()
        engine.run(frames)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) / len(frames)


def _torch_engine(backbone: EncoderOwner) -> Engine:
    return Engine("torch", "fp32", 0.0, backbone.image_encoder)


def _load(backbone: EncoderOwner, kind: EngineKind, measured: dict[str, Any]) -> Engine:
    """`kind` ready to run this backbone's encoder (its ONNX export made first if need be), with `measured`'s max_diff."""
    if kind.load is None:
        return _torch_engine(backbone)
    runner = kind.load(exported_encoder(backbone), torch.get_num_threads())

    def run(frames: torch.Tensor) -> torch.Tensor:
        embeddings = runner(np.ascontiguousarray(frames.detach().float().cpu().numpy()))
        return torch.from_numpy(np.asarray(embeddings, dtype=np.float32)).to(frames.device)

    return Engine(kind.name, kind.precision, float(measured["max_diff"]), run)


@torch.no_grad()
def compare_engines(backbone: EncoderOwner, slices: int) -> list[dict[str, Any]]:
    """Every installed engine timed now on `slices` check images at batch 1: seconds per slice, speed against
    PyTorch, and the largest difference from PyTorch's embeddings."""
    frames = check_frames(backbone, slices).to(backbone.device)
    reference = None
    rows = []
    for kind in ENGINES.values():
        if not kind.installed():
            continue
        engine = _load(backbone, kind, {"max_diff": 0.0})
        engine.run(frames[:1])
        start = time.perf_counter()
        embeddings = torch.cat([engine.run(frames[i : i + 1]) for i in range(slices)])
        reference = embeddings if reference is None else reference  # PyTorch's, at the same batch size (1)
        rows.append({"engine": kind.name, "precision": kind.precision,
                     "seconds_per_slice": (time.perf_counter() - start) / slices,
                     "max_diff": float((embeddings - reference).abs().max())})
    for row in rows:
        row["speedup"] = rows[0]["seconds_per_slice"] / row["seconds_per_slice"]
    return rows
