"""`medprompt demo`: preprocess, embed, train 10-shot from boxes, predict held-out volumes, evaluate, draw.

With no data it writes a synthetic download first, so a new user sees the whole
pipeline work in a few minutes on a laptop CPU. Everything lands in one folder:

    raw/        the synthetic download (when no --data)
    dataset/    the preprocessed dataset and its embedding cache
    run/        the training run, predictions/ and upper_bound/ volumes,
                metrics_*.csv, upper_bound_*.csv and overlays/ (what notebooks/evaluate.ipynb reads)
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

import pandas as pd

from medprompt.backbones import load_backbone
from medprompt.backbones.embedding_cache import build_cache
from medprompt.common.config import load_config
from medprompt.common.device import cpu_bf16_for, resolve_device
from medprompt.common.errors import MedpromptError
from medprompt.common.output_paths import check_output_folder
from medprompt.data.dataset import PreprocessedDataset
from medprompt.evaluation.evaluate import evaluate_volumes
from medprompt.evaluation.metrics import mean_std
from medprompt.evaluation.overlays import draw_overlays
from medprompt.inference.segment import predict_dataset
from medprompt.methods.run_dir import load_trained
from medprompt.training.run import train
from preprocessing import phantoms
from preprocessing.pipeline import GROUND_TRUTH_LAYOUTS, format_summary, preprocess

MARKER = ".medprompt_demo"
HELD_OUT = ("test",)  # the val patients' boxes choose the epoch, so only the test patients are unseen


def prepare_folder(out: Path) -> Path:
    """Create the demo folder; a previous demo's folder is emptied, any other non-empty folder is refused."""
    check_output_folder(out, "--out")
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise MedpromptError(f"{out}: exists and is not a demo folder; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()
    return out


def synthesise(dataset: str, root: Path, patients: int, seed: int) -> Path:
    """Write a synthetic download of the dataset's raw layout."""
    if dataset == "acdc":
        return phantoms.write_acdc(root, n_patients=patients, seed=seed)
    if dataset == "camus":
        return phantoms.write_camus(root, n_patients=patients, seed=seed)
    return phantoms.write_hc18(root, n_images=patients, seed=seed)


def score(pred_dir: Path, raw: Path, run_dir: Path, name: str) -> pd.DataFrame:
    """3D per-case and 2D per-slice scores of a prediction folder, written beside the run."""
    cases, slices = evaluate_volumes(pred_dir, raw, layouts=GROUND_TRUTH_LAYOUTS)
    cases.to_csv(run_dir / f"{name}_volumes.csv", index=False)
    slices.to_csv(run_dir / f"{name}_slices.csv", index=False)
    return cases


def results_table(ours: pd.DataFrame, bound: pd.DataFrame) -> pd.DataFrame:
    """Per case: the prompt module's 3D Dice / HD95 beside the box-prompted upper bound's."""
    keep = ["case", "structure", "dice", "hd95_mm"]
    return ours[keep].merge(bound[keep], on=["case", "structure"], suffixes=("", "_box_prompted"))


def format_results(table: pd.DataFrame, units: str) -> str:
    """The table a user reads at the end of the demo."""
    lines = [f"{'case':<24}{'Dice':>8}{'HD95 ' + units:>12}   |{'box-prompted Dice':>19}{'HD95 ' + units:>12}"]
    for row in table.itertuples():
        lines.append(f"{row.case:<24}{row.dice:>8.3f}{row.hd95_mm:>12.2f}   |{row.dice_box_prompted:>19.3f}"
                     f"{row.hd95_mm_box_prompted:>12.2f}")
    pm = {c: mean_std(table[c], 2 if "hd95" in c else 3)
          for c in ("dice", "hd95_mm", "dice_box_prompted", "hd95_mm_box_prompted")}
    lines.append(f"{'mean +- std':<16}{pm['dice']:>16}{pm['hd95_mm']:>16} | {pm['dice_box_prompted']:>16}"
                 f"{pm['hd95_mm_box_prompted']:>16}")
    return "\n".join(lines)


def run_demo(out: str | os.PathLike, data: str | os.PathLike | None = None, dataset: str = "acdc",
             device: str = "auto", epochs: int | None = None, progress: bool = True,
             engine: str = "auto") -> pd.DataFrame:
    """Run the whole pipeline (the encoder run by `engine`); print and return the per-case results table."""
    start = time.perf_counter()
    demo = load_config("demo")
    out = prepare_folder(Path(out))
    if data is None:
        count = demo["synthetic"]["patients"][dataset]
        print(f"[1/6] writing a synthetic {dataset.upper()} download ({count} patients) to {out / 'raw'}")
        raw = synthesise(dataset, out / "raw", count, demo["synthetic"]["seed"])
    else:
        raw = Path(data)
        print(f"[1/6] using {raw}")
    sizes = "{" + ", ".join(f"{k}: {v}" for k, v in demo["splits"].items()) + "}"
    config = load_config(dataset, overrides=[f"splits.sizes={sizes}"])
    print("[2/6] preprocessing")
    print(format_summary(preprocess(dataset, raw, out / "dataset", config)))
    data_set = PreprocessedDataset(out / "dataset")

    torch_device = resolve_device(device)
    backbone = load_backbone(device=torch_device, engine=engine)
    megabytes = len(data_set) * backbone.image_pe.shape[1] * math.prod(backbone.embedding_size) * 2 / 1e6
    print(f"[3/6] embedding {len(data_set)} slices with {backbone.backbone_id} on {torch_device}, "
          f"{backbone.engine.name} engine (a {megabytes:.0f} MB cache in {data_set.root / 'embeddings'})")
    build_cache(data_set, backbone, progress=progress)

    available = len(data_set.rows("train", with_target=True))
    shots = min(demo["shots"], available)
    train_cfg = load_config("train", overrides=[f"shots={shots}", f"seed={demo['seed']}",
                                                f"epochs={epochs if epochs is not None else demo['epochs']}",
                                                f"cpu_precision={demo['cpu_precision']}"])
    bf16 = torch_device.type == "cuda" or cpu_bf16_for(torch_device, train_cfg["cpu_precision"])
    arithmetic = "bf16" if bf16 else "fp32"
    print(f"[4/6] training the prompt module on {shots} slices, from their boxes only ({train_cfg['epochs']} epochs, "
          f"{arithmetic})")
    run_dir = train(data_set, backbone, train_cfg, out / "run", progress=progress)

    held_out = [s for s in HELD_OUT if s in set(data_set.manifest.split)]
    print(f"[5/6] predicting the held-out {' + '.join(held_out)} patients, then box prompts (upper bound)")
    model = load_trained(run_dir, torch_device, backbone=backbone)
    predict_dataset(model, out / "dataset", run_dir / "predictions", held_out, progress=progress)
    predict_dataset(model, out / "dataset", run_dir / "upper_bound", held_out, box_prompt=True, progress=progress)

    print("[6/6] evaluating in millimetres and drawing overlays")
    ours = score(run_dir / "predictions", raw, run_dir, "metrics")
    bound = score(run_dir / "upper_bound", raw, run_dir, "upper_bound")
    table = results_table(ours, bound)
    table.to_csv(run_dir / "demo_results.csv", index=False)
    draw_overlays(data_set, run_dir / "predictions", run_dir / "overlays", run_dir / "upper_bound")
    units = "mm" if (ours["units"] == "mm").all() else "px"
    print(f"\n{table.structure.iloc[0]}, {shots}-shot from boxes only, held-out patients (3D):")
    print(format_results(table, units))
    print(f"\noutputs in {out} (run: {run_dir}); wall time {time.perf_counter() - start:.0f} s")
    return table
