"""The `train` verb: a method learned from tight boxes on a preprocessed, embedded dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from medprompt.cli.options import NON_NEGATIVE, POSITIVE, Verb, add_backbone, add_config_options, add_device


def cmd_train(args: argparse.Namespace) -> None:
    from medprompt.backbones import load_backbone
    from medprompt.common.device import resolve_device
    from medprompt.common.distributed import process_group
    from medprompt.data.dataset import PreprocessedDataset
    from medprompt.training.recipe import load_train_config, resumed_train_config
    from medprompt.training.run import check_run_request, train

    overrides = list(args.overrides)
    for key in ("shots", "seed", "epochs", "supervision"):
        if getattr(args, key) is not None:
            overrides.append(f"{key}={getattr(args, key)}")
    if args.resume:
        if args.method is not None:
            overrides.append(f"method={args.method}")
        train_cfg = resumed_train_config(args.out, args.config, overrides)
    else:
        train_cfg = load_train_config(args.method, args.config, overrides)
    dataset = PreprocessedDataset(args.dataset_dir)
    check_run_request(dataset, train_cfg, args.out, args.boxes, args.resume)
    group = process_group()
    backbone = load_backbone(args.backbone, args.checkpoint, group.device(resolve_device(args.device)),
                             engine=args.engine)
    run_dir = train(dataset, backbone, train_cfg, args.out, boxes_csv=args.boxes, checkpoint=args.checkpoint,
                    resume=args.resume, group=group)
    if group.is_main:
        print(f"trained {train_cfg['method']}: {run_dir}")


def add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_dir", type=Path, metavar="DATASET_DIR",
                   help="a preprocessed dataset, embedded with `medprompt embed` (its train split is used)")
    p.add_argument("--out", type=Path, required=True, help="run directory to create (or to resume)")
    p.add_argument("--method", default=None, metavar="NAME",
                   help="conv_fc: the paper's prompt module (default); ptsam: learnable decoder tokens (--set "
                        "ptsam.encoder_vpt=8 adds prompts inside the image encoder, which then runs in the loop); sam_sp: "
                        "self-prompting with a LoRA-tuned decoder; box_prompted: the backbone given the true boxes "
                        "(the upper bound, nothing trained); the baselines unet, unetr (TransUNet-like), autosam "
                        "(a CNN gives the dense prompt), persam and persam_f (one reference slice). Each adds its "
                        "configs/methods/NAME.yaml, which may change the defaults below (`medprompt config "
                        "methods/NAME` shows it)")
    p.add_argument("--supervision", choices=["boxes", "pseudo_masks", "masks"], default=None,
                   help="pseudo_masks (default): Dice + cross-entropy on the masks the backbone draws inside the "
                        "training boxes (no mask read); boxes: the paper's box-constraint losses (no mask read); "
                        "masks: Dice + cross-entropy on the dataset's masks (the fully supervised comparison, the "
                        "baselines' default)")
    p.add_argument("--shots", type=POSITIVE, default=None, help="train on this many slices, chosen by --seed (default: all)")
    p.add_argument("--seed", type=NON_NEGATIVE, default=None, help="seed of the subset, the initialisation and the batch order (default: 0)")
    p.add_argument("--epochs", type=POSITIVE, default=None, help="number of epochs; the lr step stays at half (default: 100)")
    p.add_argument("--boxes", type=Path, default=None,
                   help="boxes CSV: slice_id,x_min,y_min,x_max,y_max in preprocessed slice pixels, or "
                        "case,slice_index,x_min,y_min,x_max,y_max[,label] drawn on the original images "
                        "(default: tight boxes of the dataset's masks)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out with its recorded settings (no need to repeat them)")
    add_backbone(p)
    add_device(p)
    add_config_options(p, "train")


VERBS = [
    Verb("train", cmd_train, add_train,
     "Train a method (default: the paper's prompt module) from tight boxes only: the masks the backbone draws in "
     "them are its targets (--supervision boxes: the paper's box losses).",
     "each epoch logs how much of the training boxes is predicted (box_fill); a run whose predictions stay\n"
     "empty starts again from a new initialisation, and fails rather than write an empty model. Every 5 epochs\n"
     "the predictions on the val split are scored against its boxes (never its masks); the best epoch is kept.\n"
     "the structure is the dataset's target; another label of the same dataset: --set label=N (e.g. 1 for ACDC's RV).\n"
     "settings: `medprompt config train` (--set collapse.patience=20, --set selection.split=null, ...)\n"
     "example: medprompt train data/acdc --out runs/acdc-10shot --shots 10 --seed 0\n"
     "         medprompt train data/acdc --out runs/acdc-ptsam --method ptsam --supervision masks\n"
     "         medprompt train data/acdc --out runs/acdc-unet --method unet --shots 10      (from masks)\n"
     "         medprompt train data/acdc --out runs/acdc-10shot --resume\n"
     "         torchrun --nproc_per_node 4 -m medprompt train data/acdc --out runs/acdc-unet --method unet\n"
     "           (each batch shared out among the processes, each on its own GPU or the CPU: the same step as one\n"
     "           process with the same --set batch_size)"),
]
