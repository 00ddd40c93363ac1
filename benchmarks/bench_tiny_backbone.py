"""Measure the bundled tiny backbone on this machine: batched encoding, one prompt-module training step, the loss alone.

Uses the shipped weights when present (random ones otherwise: same architecture, same cost),
fp32 and torch's default thread count.
Run: python benchmarks/bench_tiny_backbone.py [--repeats 5] [--encode-batch 16]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np
import torch

from medprompt.backbone import bundled_weights, load_backbone
from medprompt.box_losses import BoxConstraintLoss
from medprompt.prompt_learners import build_prompt_learner
from medprompt.tiny_sam import build_tiny_backbone

TRAIN_BATCH = 4
SLICE = 256


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of `fn` over `repeats` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--encode-batch", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    backbone = load_backbone() if bundled_weights("medprompt_tiny") else build_tiny_backbone(seed=0)
    images = torch.randint(0, 255, (args.encode_batch, SLICE, SLICE), dtype=torch.uint8)
    t_encode = timed(lambda: backbone.encode(images), args.repeats)

    embeddings = backbone.encode(images[:TRAIN_BATCH])
    learner = build_prompt_learner("conv_fc")
    optimiser = torch.optim.Adam(learner.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = BoxConstraintLoss()
    boxes = [np.array([[80, 90, 150, 170]])] * TRAIN_BATCH

    def train_step() -> None:
        sparse, dense = learner(embeddings)
        loss = loss_fn(backbone.decode(embeddings, sparse, dense), boxes)["loss"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    logits = torch.randn(TRAIN_BATCH, 1, backbone.low_res_size, backbone.low_res_size, requires_grad=True)

    def loss_only() -> None:
        loss_fn(logits, boxes)["loss"].backward()

    t_step = timed(train_step, args.repeats)
    t_loss = timed(loss_only, args.repeats)
    params = sum(p.numel() for p in backbone.parameters())
    print(f"backbone: {backbone.backbone_id}, {params:,} parameters, torch threads {torch.get_num_threads()}")
    print(f"encode: {args.encode_batch / t_encode:.1f} slices/s ({SLICE}x{SLICE} uint8, batch {args.encode_batch}, fp32)")
    print(f"train step (batch {TRAIN_BATCH}, prompt module + decode + box loss + backward + Adam): {t_step:.3f} s")
    print(f"box loss alone (batch {TRAIN_BATCH}, {backbone.low_res_size}x{backbone.low_res_size}, forward + backward): {t_loss * 1000:.1f} ms")


if __name__ == "__main__":
    main()
