"""`medprompt embed` under torchrun: slices per second of the whole command (processes started, backbone loaded,
slices encoded, cache assembled) with 1 process and with N, on the ACDC sample preprocessed once.

On a machine with N GPUs each process takes one; on a CPU the processes share its cores (torchrun gives each
one thread), so there the figure says what the group's overhead costs rather than what it gains.
Run: python benchmarks/bench_distributed_embed.py [--data ../shared/data] [--work bench_distributed_embed]
     [--processes 1 2] [--engine auto] [--device auto]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from medprompt.data.dataset import PreprocessedDataset


def embed_seconds(dataset: Path, processes: int, engine: str, device: str) -> float:
    """Wall seconds of `embed --overwrite` with `processes` members (one plain process for 1)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] \
        if processes > 1 else [sys.executable]
    start = time.perf_counter()
    subprocess.run([*launcher, "-m", "medprompt", "embed", str(dataset), "--overwrite", "--engine", engine,
                    "--device", device], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("bench_distributed_embed"))
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--engine", default="auto")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    dataset = args.work / "acdc"
    if not (dataset / "manifest.csv").is_file():
        subprocess.run([sys.executable, "-m", "medprompt", "preprocess", "acdc", str(args.data / "ACDC"),
                        str(dataset)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    slices = len(PreprocessedDataset(dataset))
    for processes in args.processes:
        seconds = embed_seconds(dataset, processes, args.engine, args.device)
        print(f"{processes} process(es): {slices} slices in {seconds:6.1f} s = {slices / seconds:5.2f} slices/s",
              flush=True)


if __name__ == "__main__":
    main()
