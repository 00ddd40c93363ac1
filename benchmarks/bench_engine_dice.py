"""What each encoder engine does to a trained model's Dice: one run, its test volumes predicted by every engine.

Training reads embeddings, so two engines' runs differ by more than their engines (a 1e-6 change in an embedding
moves a short training run's trajectory). This holds the model fixed: the default recipe trained once from torch's
embeddings (the smoke protocol's ACDC LV run), then `medprompt predict` on the test patients' raw volumes (ED and
ES) with each engine, which encodes every slice again. Printed: mean 2D Dice against the labels over slices with
the structure, its change from torch, and the masks' agreement with torch's (Dice over all voxels).
Run: python benchmarks/bench_engine_dice.py [--data ../shared/data] [--work bench_engine_dice]
     [--engines torch openvino onnxruntime openvino-bf16]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from medprompt.evaluation.metrics import dice

LV = 3  # ACDC's left-ventricle label, the smoke protocol's task


def medprompt(*command: str) -> None:
    """Run a medprompt command line in a new process, as a user does; it must succeed."""
    subprocess.run([sys.executable, "-m", "medprompt", *command], check=True, stdout=subprocess.DEVNULL)


def trained_cell(work: Path) -> Path:
    """The smoke protocol's ACDC LV cell of the default recipe, trained from torch's embeddings (made once)."""
    bench = work / "smoke_torch"
    medprompt("benchmark", "smoke", "--out", str(bench), "--engine", "torch")
    return next((bench / "cells" / "acdc_lv" / "default").iterdir())


def test_volumes(cell: Path, acdc: Path) -> list[Path]:
    """The raw image volumes (every labelled frame) of the cell's test patients."""
    patients = sorted({case.split("_")[0] for case in pd.read_csv(cell / "cases.csv")["case"]})
    return sorted(p for patient in patients for p in (acdc / "training" / patient).glob(f"{patient}_frame??.nii.gz"))


def scores(predictions: Path, volumes: list[Path], reference: Path | None) -> dict[str, float]:
    """Mean 2D Dice over labelled slices, and the voxel Dice of these masks against `reference`'s (if given)."""
    slice_dice, agreement = [], []
    for volume in volumes:
        name = volume.name.removesuffix(".nii.gz")
        pred = np.asarray(nib.load(predictions / f"{name}.nii.gz").dataobj) > 0
        truth = np.asarray(nib.load(volume.with_name(f"{name}_gt.nii.gz")).dataobj) == LV
        slice_dice += [dice(pred[..., z], truth[..., z]) for z in range(truth.shape[-1]) if truth[..., z].any()]
        if reference is not None:
            agreement.append(dice(pred, np.asarray(nib.load(reference / f"{name}.nii.gz").dataobj) > 0))
    return {"slices": len(slice_dice), "2D Dice": float(np.mean(slice_dice)),
            "agreement with torch": float(np.mean(agreement)) if agreement else 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("bench_engine_dice"))
    parser.add_argument("--engines", nargs="+", default=["torch", "openvino", "onnxruntime", "openvino-bf16"])
    args = parser.parse_args()
    cell = trained_cell(args.work)
    volumes = test_volumes(cell, args.data / "ACDC")
    rows, reference = [], None
    for engine in dict.fromkeys(["torch", *args.engines]):
        out = args.work / f"predict_{engine}"
        shutil.rmtree(out, ignore_errors=True)
        medprompt("predict", str(cell / "run"), *map(str, volumes), "--out", str(out), "--engine", engine)
        rows.append({"engine": engine, **scores(out, volumes, reference)})
        reference = reference or out
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows).set_index("engine")
    table["change from torch"] = table["2D Dice"] - table.loc["torch", "2D Dice"]
    print(f"\none run ({cell.relative_to(args.work)}), {len(volumes)} test volumes, each engine encoding them:")
    print(table.round(4).to_string())


if __name__ == "__main__":
    main()
