"""Measure the MedSAM ViT-B path on this machine: encoder per slice, one training step, the loss alone.

Random weights stand in for the checkpoint (same architecture, same cost).
Run: python benchmarks/bench_medsam_cpu.py [--device cpu|cuda] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from medprompt.backbone import build_medsam_vit_b
from medprompt.box_losses import BoxConstraintLoss
from medprompt.device import autocast, resolve_device
from medprompt.prompt_learners import build_prompt_learner


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encode-batch", type=int, default=1)
    args = parser.parse_args()
    device = resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    backbone = build_medsam_vit_b().to(device)
    images = torch.randint(0, 255, (args.encode_batch, 1024, 1024), dtype=torch.uint8)

    def encode():
        with autocast(device):
            backbone.encode(images)

    t_encode = timed(encode, args.repeats, sync)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    print(f"encode: {t_encode:.2f} s per batch of {args.encode_batch} 1024x1024 slices "
          f"({args.encode_batch / t_encode:.2f} slices/s)")

    learner = build_prompt_learner("conv_fc").to(device)
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = BoxConstraintLoss()
    embeddings = torch.randn(4, 256, 64, 64, device=device)
    boxes = [np.array([[60, 70, 150, 170]]), np.array([[10, 10, 90, 60], [120, 130, 200, 220]]),
             np.array([[0, 100, 80, 255]]), np.array([[30, 30, 200, 200]])]

    def step():
        with autocast(device):
            sparse, dense = learner(embeddings)
            logits = backbone.decode(embeddings, sparse, dense)
        loss = loss_fn(logits.float(), boxes)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    t_step = timed(step, args.repeats, sync)
    print(f"train step (batch 4, MedSAM decoder): {t_step:.3f} s ({1 / t_step:.2f} steps/s)")

    logits = torch.randn(4, 1, 256, 256, device=device, requires_grad=True)

    def loss_only():
        loss_fn(logits, boxes)["loss"].backward()

    t_loss = timed(loss_only, max(args.repeats, 20), sync)
    print(f"box losses alone (batch 4, 256x256, forward + backward): {t_loss * 1000:.2f} ms")


if __name__ == "__main__":
    main()
