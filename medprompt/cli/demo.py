"""The `demo` verb: the whole pipeline end to end, on synthetic data or a download (`demo_pipeline`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from medprompt.cli.options import POSITIVE, Verb, add_device, add_engine, dataset_names


def cmd_demo(args: argparse.Namespace) -> None:
    from medprompt.cli.demo_pipeline import run_demo

    run_demo(args.out, data=args.data, dataset=args.dataset, device=args.device, epochs=args.epochs,
             engine=args.engine)


def add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("medprompt_demo"), help="output folder (default: medprompt_demo)")
    p.add_argument("--data", type=Path, default=None, help="a raw dataset folder to use instead of synthetic data")
    p.add_argument("--dataset", default="acdc", choices=[d for d in dataset_names() if d != "folder"],
                   help="layout of --data (default: acdc)")
    p.add_argument("--epochs", type=POSITIVE, default=None,
                   help="training epochs (default: configs/demo.yaml's, fewer than `train`'s)")
    add_device(p)
    add_engine(p)


VERBS = [
    Verb("demo", cmd_demo, add_demo, "Run the whole pipeline end to end (synthetic ACDC-like data by default).",
     "example: medprompt demo --out demo_out\n"
     "         medprompt demo --data ~/data/ACDC --out demo_acdc"),
]
