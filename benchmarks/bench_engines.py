"""The encoder's inference engines side by side on this machine, in one run: encoder speed, the demo's and predict's
wall time, and the default recipe's Dice on the shared ACDC sample with each engine.

For each engine: seconds per slice of LiteMedSAM's encoder at batch 1 (`medprompt backbones --bench`), the wall
time of `medprompt demo`, of `medprompt predict` on 20 HC18 sample images (with a one-epoch HC18 run made once
before, for timing only), and `medprompt benchmark smoke` (the default recipe from 10 boxes and the box-prompted bound
on the ACDC sample), whose 2D Dice is printed. Each command runs in its own process, as a user runs it.
Run: python benchmarks/bench_engines.py [--data ../shared/data] [--work bench_engines]
     [--engines torch openvino onnxruntime openvino-bf16] [--slices 10]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd


def timed(command: list[str]) -> float:
    """Wall seconds of a medprompt command line run in a new process; it must succeed."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "medprompt", *command], check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    print(f"{seconds:7.1f} s  medprompt {' '.join(command[:2])} ... {' '.join(command[-2:])}", flush=True)
    return seconds


def hc18_run(data: Path, work: Path) -> Path:
    """A one-epoch run on the HC18 sample (made once; its predictions are timed, not scored)."""
    run = work / "hc18_run"
    if not (run / "method.safetensors").is_file():
        shutil.rmtree(work / "hc18_data", ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
        timed(["preprocess", "hc18", str(data / "HC18"), str(work / "hc18_data")])
        timed(["embed", str(work / "hc18_data"), "--engine", "torch"])
        timed(["train", str(work / "hc18_data"), "--out", str(run), "--shots", "10", "--epochs", "1"])
    return run


def encoder_seconds(slices: int) -> dict[str, float]:
    """Seconds per slice of each installed engine, from one `medprompt backbones --bench` run."""
    out = subprocess.run([sys.executable, "-m", "medprompt", "backbones", "--bench", str(slices)], check=True,
                         capture_output=True, text=True).stdout
    print(out, end="")
    return {line.split()[0]: float(line.split()[2]) for line in out.splitlines()[2:]}


def smoke_dice(work: Path, engine: str) -> tuple[float, float, float]:
    """(seconds, default recipe's 2D Dice, bound's 2D Dice) of the smoke protocol with `engine`."""
    out = work / f"smoke_{engine}"
    shutil.rmtree(out, ignore_errors=True)
    seconds = timed(["benchmark", "smoke", "--out", str(out), "--engine", engine])
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    return seconds, float(summary.loc["default", "dice_2d"]), float(summary.loc["box_prompted", "dice_2d"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("bench_engines"))
    parser.add_argument("--engines", nargs="+", default=["torch", "openvino", "onnxruntime", "openvino-bf16"])
    parser.add_argument("--slices", type=int, default=10)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    per_slice = encoder_seconds(args.slices)
    run = hc18_run(args.data, args.work)
    images = sorted((args.data / "HC18" / "training_set").glob("*_HC.png"))[:20]
    rows = []
    for engine in args.engines:
        demo = args.work / f"demo_{engine}"
        shutil.rmtree(demo, ignore_errors=True)
        row = {"engine": engine, "encoder s/slice": per_slice.get(engine, float("nan")),
               "demo s": timed(["demo", "--out", str(demo), "--engine", engine])}
        predictions = args.work / f"predict_{engine}"
        shutil.rmtree(predictions, ignore_errors=True)
        row[f"predict {len(images)} HC18 s"] = timed(["predict", str(run), *map(str, images), "--out",
                                                      str(predictions), "--engine", engine])
        row["smoke s"], row["default 2D Dice"], row["bound 2D Dice"] = smoke_dice(args.work, engine)
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows).set_index("engine")
    speed = table.loc["torch"] / table if "torch" in table.index else None
    print(table.round(4).to_string())
    if speed is not None:
        print("\nspeed against torch (x):")
        print(speed[["encoder s/slice", "demo s", f"predict {len(images)} HC18 s", "smoke s"]].round(2).to_string())


if __name__ == "__main__":
    main()
