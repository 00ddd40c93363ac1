"""The `evaluate` verb: predictions scored against ground truth, per slice or per volume in mm."""

from __future__ import annotations

import argparse
from pathlib import Path

from medprompt.cli.options import Verb


def cmd_evaluate(args: argparse.Namespace) -> None:
    from medprompt.evaluation.evaluate import evaluate
    from preprocessing.pipeline import GROUND_TRUTH_LAYOUTS

    print(evaluate(args.pred_dir, args.gt_dir, args.out, reference_csv=args.reference, layouts=GROUND_TRUTH_LAYOUTS))


def add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred_dir", type=Path, metavar="PRED_DIR", help="an output folder of `medprompt predict`")
    p.add_argument("gt_dir", type=Path, metavar="GT_DIR",
                   help="the preprocessed dataset (2D scores) or the raw dataset's label files (3D scores in mm)")
    p.add_argument("--out", type=Path, default=Path("metrics.csv"), help="CSV to write (default: metrics.csv)")
    p.add_argument("--reference", "--hc-csv", dest="reference", type=Path, default=None, metavar="CSV",
                   help="a dataset's per-case reference file, e.g. HC18's pixel-size / head-circumference CSV (pixel "
                        "sizes of its PNGs, head circumference error); by default one found in GT_DIR or its parent")


VERBS = [
    Verb("evaluate", cmd_evaluate, add_evaluate, "Score predictions against ground truth.",
     "PRED_DIR from `predict` on a dataset + GT_DIR the dataset: per-slice Dice, IoU, HD95;\n"
     "PRED_DIR of volumes + GT_DIR of label files (e.g. the raw dataset): per-case 3D Dice, HD95, ASSD in mm.\n"
     "example: medprompt evaluate predictions/ data/acdc --out metrics.csv"),
]
