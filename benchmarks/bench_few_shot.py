"""The few-shot table on the real samples: prompts learned from boxes against the box-prompted bound, per seed.

For each task the raw sample is preprocessed (splits by patient, test held out)
and embedded with the backbone once, then for each seed a run is trained from
the tight boxes of k training slices, its test slices are predicted and scored
against their masks (2D Dice over test slices with the structure), next to the
backbone prompted with the true boxes on the same slices; ACDC also gets 3D
Dice and HD95 in mm against the raw labels. When the recipe refines (a box-prompted
second pass), the first pass alone is scored too; with several seeds, the seed whose kept epoch
best fits the val split's boxes is reported too. Work files go under --work and are
reused (delete a task's folder to redo it).

Run: python benchmarks/bench_few_shot.py [--data ../shared/data] [--work bench_few_shot]
     [--tasks acdc_lv acdc_rv camus_lv camus_la hc18] [--seeds 0 1 2] [--shots 10] [--config paper --tag paper]
     [--method ptsam --supervision masks --tag ptsam_masks] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from safetensors import safe_open

from medprompt.backbones import load_backbone
from medprompt.backbones.embedding_cache import build_cache
from medprompt.common.config import load_config
from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import PreprocessedDataset
from medprompt.evaluation.evaluate import evaluate_slices, evaluate_volumes
from medprompt.inference.segment import predict_dataset
from medprompt.methods.run_dir import load_trained
from medprompt.training.recipe import load_train_config
from medprompt.training.run import train
from preprocessing.pipeline import GROUND_TRUTH_LAYOUTS, preprocess

SPLITS = "splits.sizes={train: 6, val: 2, test: 4}"


@dataclass(frozen=True)
class Task:
    """A structure of a dataset, and the preprocessing it is measured with."""

    dataset: str
    raw: str
    label: int
    preprocessing: tuple[str, ...]
    volumes: bool


TASKS = {
    "acdc_lv": Task("acdc", "ACDC", 3, (SPLITS,), True),
    "acdc_rv": Task("acdc", "ACDC", 1, (SPLITS,), True),
    "camus_lv": Task("camus", "CAMUS", 1, ("views=[2CH,4CH]", "frames=[ED,ES]"), False),
    "camus_la": Task("camus", "CAMUS", 3, ("views=[2CH,4CH]", "frames=[ED,ES]"), False),
    "hc18": Task("hc18", "HC18", 1, (), False),
}


def prepared(task: Task, data: Path, work: Path, backbone) -> PreprocessedDataset:
    """The task's preprocessed, embedded dataset (made once per dataset)."""
    root = work / task.dataset
    if not (root / "manifest.csv").exists():
        preprocess(task.dataset, data / task.raw, root, load_config(task.dataset, overrides=list(task.preprocessing)))
    dataset = PreprocessedDataset(root)
    build_cache(dataset, backbone)
    return dataset


def test_dice(pred_dir: Path, dataset: PreprocessedDataset) -> float:
    """Mean 2D Dice over the predicted slices that hold the structure."""
    table = evaluate_slices(pred_dir, dataset.root)
    return float(table.dice[table.has_target].mean())


def run_task(name: str, args: argparse.Namespace, backbone) -> list[str]:
    """Train and score every seed of one task; the table's lines."""
    task = TASKS[name]
    dataset = prepared(task, args.data, args.work, backbone)
    available = len(dataset.rows("train", with_target=True))
    given = [f"{key}={value}" for key, value in (("epochs", args.epochs), ("supervision", args.supervision))
             if value is not None]
    lines, scores, selection = [], [], {}
    bound_dir = args.work / name / "box_prompted"
    for seed in args.seeds:
        run = args.work / name / f"{args.tag}_seed{seed}"
        cfg = load_train_config(args.method, args.config, [f"label={task.label}", f"seed={seed}", *given,
                                                           *args.overrides])
        shots = min(args.shots or cfg["shots"] or 10, available)
        cfg["shots"] = shots
        start, trained_now = time.perf_counter(), not (run / "method.safetensors").exists()
        try:
            if trained_now:
                train(dataset, backbone, cfg, run, resume=(run / "config.yaml").exists(), progress=False)
        except MedpromptError as exc:
            lines.append(f"{name:<9} seed {seed}: no model ({exc})")
            scores.append(0.0)
            continue
        timing = f"{time.perf_counter() - start:.0f} s training" if trained_now else "trained earlier"
        model = load_trained(run, backbone.device, backbone=backbone)
        predict_dataset(model, dataset.root, run / "test", ["test"], progress=False)
        first_pass = f", {model.method.parameter_count():,} parameters"
        if model.refine.enabled:
            model.refine = replace(model.refine, enabled=False)
            predict_dataset(model, dataset.root, run / "test_first_pass", ["test"], progress=False)
            first_pass += f", first pass alone {test_dice(run / 'test_first_pass', dataset):.3f}"
        if not bound_dir.exists():
            predict_dataset(model, dataset.root, bound_dir, ["test"], box_prompt=True, progress=False)
        dice = test_dice(run / "test", dataset)
        scores.append(dice)
        selection[seed] = (val_box_iou(run), dice)
        extra = ""
        if task.volumes:
            cases, _ = evaluate_volumes(run / "test", args.data / task.raw, labels={task.label: name},
                                        layouts=GROUND_TRUTH_LAYOUTS)
            extra = f", 3D Dice {cases.dice.mean():.3f}, HD95 {cases.hd95_mm.mean():.2f} mm"
        lines.append(f"{name:<9} seed {seed}: {cfg['method']} from {cfg['supervision']}, 2D Dice {dice:.3f}{first_pass}"
                     f"{extra} ({shots} shots, {timing}, val box IoU {selection[seed][0]:.3f})")
    bound = test_dice(bound_dir, dataset) if bound_dir.exists() else float("nan")
    mean = float(np.mean(scores))
    lines.append(f"{name:<9} mean {mean:.3f} +- {np.std(scores):.3f} | box-prompted {bound:.3f} | "
                 f"fraction of the bound {mean / bound:.2f}")
    if len(selection) > 1:
        seed = max(selection, key=lambda s: selection[s][0])
        lines.append(f"{name:<9} seed chosen by val box IoU: {seed}, 2D Dice {selection[seed][1]:.3f}")
    return lines


def val_box_iou(run: Path) -> float:
    """The held-out box IoU of the epoch a run kept (NaN without a selection split)."""
    with safe_open(str(run / "method.safetensors"), "pt") as f:
        return float(f.metadata().get("val_box_iou", "nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--work", type=Path, default=Path("bench_few_shot"))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shots", type=int, default=None, help="training slices (default: the method's, else 10)")
    parser.add_argument("--epochs", type=int, default=None, help="default: the method's config")
    parser.add_argument("--method", default=None, help="a registered method (default: the config's, conv_fc)")
    parser.add_argument("--supervision", default=None, choices=["boxes", "pseudo_masks", "masks"],
                        help="default: the method's config")
    parser.add_argument("--config", default=None, help="a training config: a YAML file or a bundled name (paper)")
    parser.add_argument("--tag", default="default", help="name of this recipe's run folders")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", module="monai")
    backbone = load_backbone()
    for name in args.tasks:
        for line in run_task(name, args, backbone):
            print(line, flush=True)


if __name__ == "__main__":
    main()
