"""`medprompt export`: a trained run as a folder to share (the Hugging Face Hub layout), optionally uploaded."""

from __future__ import annotations

import argparse
from pathlib import Path

from medprompt.cli.options import Verb, add_device, add_engine


def cmd_export(args: argparse.Namespace) -> None:
    from medprompt.common.device import resolve_device
    from medprompt.export.hub_folder import export_run
    from medprompt.export.hub_upload import check_repo_id, push
    from medprompt.export.model_card import read_metrics

    if args.push:
        check_repo_id(args.push)
    metrics = read_metrics(args.metrics) if args.metrics else []
    folder = export_run(args.run_dir, args.out, resolve_device(args.device), engine=args.engine,
                        include_boxes=args.include_boxes, metrics=metrics, license_id=args.license,
                        checkpoint=args.checkpoint, onnx=args.onnx)
    print(f"exported {args.run_dir} to {folder}; checked: it predicts what the run predicts")
    if args.onnx:
        print(f"ONNX segmenter: {args.onnx} (and its second pass and description beside it; see docs/sharing.md)")
    if args.push:
        print(f"uploaded to {push(folder, args.push, private=args.private)}")


def add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder written by `medprompt train`")
    p.add_argument("--out", type=Path, required=True,
                   help="a new (or empty) folder for the export: README.md (model card), config.json, "
                        "model.safetensors, test_tensors.safetensors")
    p.add_argument("--metrics", type=Path, default=None,
                   help="a CSV from `medprompt evaluate` of this run's predictions: its mean Dice and HD95 go into "
                        "the model card")
    p.add_argument("--license", default="other",
                   help="the license identifier the model card declares (default: other; e.g. cc-by-4.0)")
    p.add_argument("--include-boxes", action="store_true",
                   help="also export the training boxes (train_boxes.csv: slice ids and box corners); off by default")
    p.add_argument("--push", metavar="OWNER/NAME", default=None,
                   help="then upload the folder to this Hugging Face Hub model repository (needs `hf auth login` or "
                        "HF_TOKEN, and the network)")
    p.add_argument("--private", action="store_true", help="with --push: create the repository private")
    p.add_argument("--onnx", type=Path, metavar="FILE.onnx", default=None,
                   help="also write the segmenter as ONNX graphs (a preprocessed slice -> probabilities; the second "
                        "pass as FILE.second_pass.onnx; FILE.json describes the box rule between them)")
    p.add_argument("--checkpoint", type=Path, default=None, help="the run's backbone checkpoint, if it has moved")
    add_device(p)
    add_engine(p)


VERBS = [
    Verb("export", cmd_export, add_export,
         "Export a trained run to share: a folder in the Hugging Face Hub layout that predict takes like a run.",
         "the folder is checked before it is written: loaded back, it must predict what the run predicts.\n"
         "example: medprompt export runs/acdc-10shot --out exports/acdc-lv\n"
         "         medprompt predict exports/acdc-lv patient101_frame01.nii.gz --out predictions/\n"
         "         medprompt export runs/acdc-10shot --out exports/acdc-lv --push my-lab/acdc-lv-10-boxes"),
]
