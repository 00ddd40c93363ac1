"""Verbs that segment and rebuild volumes: `predict` (no boxes, no labels) and `reconstruct`."""

from __future__ import annotations

import argparse
from pathlib import Path

from medprompt.cli.options import POSITIVE, Verb, add_device, add_engine


def cmd_predict(args: argparse.Namespace) -> None:
    import pandas as pd

    from medprompt.common.device import resolve_device
    from medprompt.common.distributed import process_group
    from medprompt.inference.predict import predict_inputs
    from medprompt.inference.quality import QUALITY, review_line
    from preprocessing.pipeline import preprocess_input

    group = process_group()
    device = group.device(resolve_device(args.device))
    written = predict_inputs(args.run_dir, args.inputs, args.out, device, checkpoint=args.checkpoint,
                             split=args.split, batch_size=args.batch_size, box_prompt=args.box_prompt,
                             refine=args.refine, prepare=preprocess_input, orientations=args.orientations,
                             engine=args.engine, largest_component=args.largest_component,
                             output_format=args.format, group=group)
    if group.is_main:
        print(f"{len(written)} outputs in {args.out}")
        for path in written:
            if path.name == QUALITY:
                print(f"{path.parent}: {review_line(pd.read_csv(path, dtype={'case': str}))}")


def cmd_reconstruct(args: argparse.Namespace) -> None:
    from medprompt.inference.reconstruct import reconstruct_dataset

    written = reconstruct_dataset(args.dataset_dir, args.array, args.out)
    print(f"{len(written)} volumes in {args.out}")


def add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                   help="a run folder written by `medprompt train`, or a model exported by `medprompt export` (also as "
                        "the Hugging Face Hub's download cache of it, models--OWNER--NAME)")
    p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT",
                   help="preprocessed dataset folders, or image files: NIfTI (.nii, .nii.gz), .mhd or .png, or DICOM "
                        "series folders (predicted as NIfTI in the series' geometry)")
    p.add_argument("--out", type=Path, required=True, help="output folder (never one holding an input)")
    p.add_argument("--format", default="nifti", choices=["nifti", "dicom-seg"],
                   help="for DICOM series inputs: nifti (default), or dicom-seg: also a DICOM Segmentation object "
                        "(<series>.seg.dcm) that references the series' instances, for a clinical viewer or PACS")
    p.add_argument("--split", default="all", choices=["all", "train", "val", "test"],
                   help="for a dataset input: which slices to predict (default: all, the training slices included; "
                        "use test to score held-out patients)")
    p.add_argument("--box-prompt", action="store_true",
                   help="for a dataset input with masks: prompt the backbone with the tight ground-truth boxes instead "
                        "(the upper bound)")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                   help="second pass: prompt the backbone with the box of the learned prompt's mask (default: as the "
                        "run was trained, `refine.enabled`; on for the default recipe, off for --config paper)")
    p.add_argument("--largest-component", action=argparse.BooleanOptionalAction, default=None,
                   help="keep each predicted volume's largest 3D connected component, dropping blobs on slices apart "
                        "from the structure (default: as the run was trained, `refine.largest_component`, on for the default recipe, off for --config paper)")
    p.add_argument("--orientations", default="none", choices=["none", "flips", "dihedral"],
                   help="average the learned prompt's mask over each slice flipped (flips: 4 orientations) or also "
                        "turned and transposed (dihedral: 8), each encoded again, so 4x or 8x the encoder's time; "
                        "for a run trained with the same `orientations` (default: none)")
    p.add_argument("--batch-size", type=POSITIVE, default=None, help="slices per batch (default: 1 on CPU, 16 on CUDA)")
    p.add_argument("--checkpoint", type=Path, default=None, help="the run's backbone checkpoint, if it has moved")
    add_device(p)
    add_engine(p)


def add_reconstruct(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_dir", type=Path, metavar="DATASET_DIR",
                   help="the preprocessed dataset whose manifest.csv records the source geometry")
    p.add_argument("array", metavar="SLICES.h5[:ARRAY]",
                   help="an HDF5 file with one [N,H,W] array aligned with the manifest's rows (default array: mask)")
    p.add_argument("--out", type=Path, required=True, help="folder for the volumes")


VERBS = [
    Verb("predict", cmd_predict, add_predict, "Segment images it has never seen: no boxes, no labels.",
     "each output is written in its input's own geometry and format, named after the input, in --out.\n"
     "example: medprompt predict runs/acdc-10shot patient101_frame01.nii.gz --out predictions/\n"
     "         medprompt predict runs/acdc-10shot data/acdc --split test --out predictions/\n"
     "         medprompt predict runs/lv-10shot dicom/series_1 --format dicom-seg --out predictions/\n"
     "         torchrun --nproc_per_node 4 -m medprompt predict runs/acdc-10shot data/acdc --out predictions/\n"
     "           (the slices, or the files, shared out among the processes, each on its own GPU or the CPU)"),
    Verb("reconstruct", cmd_reconstruct, add_reconstruct,
     "Turn a per-slice array aligned with a manifest back into source-geometry volumes.",
     "example: medprompt reconstruct data/acdc data/acdc/slices.h5:mask --out roundtrip/"),
]
