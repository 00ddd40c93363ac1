"""Verbs that make a dataset ready: `preprocess` (raw download -> slices) and `embed` (the encoder, once)."""

from __future__ import annotations

import argparse
from pathlib import Path

from medprompt.cli.options import POSITIVE, Verb, add_backbone, add_config_options, add_device, dataset_names


def cmd_preprocess(args: argparse.Namespace) -> None:
    from medprompt.common.config import load_config
    from preprocessing.pipeline import format_summary, preprocess

    config = load_config(args.dataset, args.config, args.overrides)
    summary = preprocess(args.dataset, args.raw_dir, args.out_dir, config, overwrite=args.overwrite)
    print(format_summary(summary))


def cmd_embed(args: argparse.Namespace) -> None:
    from medprompt.backbones import load_backbone
    from medprompt.backbones.embedding_cache import build_cache
    from medprompt.common.device import resolve_device
    from medprompt.common.distributed import process_group
    from medprompt.data.dataset import PreprocessedDataset

    dataset = PreprocessedDataset(args.dataset_dir)
    group = process_group()
    backbone = load_backbone(args.backbone, args.checkpoint, group.device(resolve_device(args.device)),
                             engine=args.engine)
    path = build_cache(dataset, backbone, batch_size=args.batch_size, overwrite=args.overwrite, group=group)
    if group.is_main:
        print(f"embeddings of {len(dataset)} slices: {path}")


def add_preprocess(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=dataset_names(), help="which layout RAW_DIR holds: acdc, camus, hc18 as "
                   "downloaded, or folder (your own NIfTI / MHD / PNG files, labels optional)")
    p.add_argument("raw_dir", type=Path, metavar="RAW_DIR", help="the dataset folder (e.g. ACDC/, holding training/ "
                   "and optionally testing/; or your folder of images)")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder to write slices.h5 and manifest.csv into")
    p.add_argument("--overwrite", action="store_true", help="replace a preprocessed dataset already in OUT_DIR")
    add_config_options(p, "acdc")


def add_embed(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_dir", type=Path, metavar="DATASET_DIR", help="a folder written by `medprompt preprocess`")
    add_backbone(p)
    add_device(p)
    p.add_argument("--batch-size", type=POSITIVE, default=None, help="slices per encoder batch (default: 1 on CPU, 16 on CUDA)")
    p.add_argument("--overwrite", action="store_true", help="rebuild the cache even if one exists")


VERBS = [
    Verb("preprocess", cmd_preprocess, add_preprocess,
     "Turn a raw dataset folder, as downloaded, into a preprocessed dataset.",
     "the structure to segment is the config's `target`; splits are drawn by patient (the summary says how).\n"
     "examples: medprompt preprocess acdc ~/data/ACDC data/acdc --set target=RV\n"
     "          medprompt preprocess camus ~/data/CAMUS data/camus --set \"views=[2CH,4CH]\" --set \"frames=[ED,ES]\"\n"
     "          medprompt preprocess folder my_scans/ data/mine --set \"labels={1: liver}\" --set target=liver\n"
     "          medprompt config acdc      (every key and its default; `config folder` for your own images)"),
    Verb("embed", cmd_embed, add_embed, "Encode every slice once with the frozen image encoder (resumable cache).",
     "example: medprompt embed data/acdc                 (LiteMedSAM, the default)\n"
     "         medprompt embed data/acdc --checkpoint medsam_vit_b.pth\n"
     "         torchrun --nproc_per_node 4 -m medprompt embed data/acdc   (each process its share of the slices)"),
]
