"""Verbs that describe what is installed: `backbones` and `config`."""

from __future__ import annotations

import argparse
from pathlib import Path

from medprompt.cli.options import POSITIVE, Verb, add_backbone, add_device


def cmd_backbones(args: argparse.Namespace) -> None:
    from medprompt.backbones import describe_backbones

    if args.bench is None:
        print(describe_backbones())
        return
    from medprompt.backbones import load_backbone
    from medprompt.backbones.engines import compare_engines, resolve_engine
    from medprompt.common.device import resolve_device

    backbone = load_backbone(args.backbone, args.checkpoint, resolve_device(args.device))
    rows = compare_engines(backbone, args.bench)
    chosen = resolve_engine(backbone, "auto").name
    print(f"{backbone.backbone_id} encoder, {args.bench} slices at batch 1, {torch_threads()} threads, {backbone.device}")
    print(f"{'engine':<14}{'precision':<10}{'s/slice':>9}{'vs torch':>10}{'max |diff|':>12}")
    for row in rows:
        mark = "  <- auto" if row["engine"] == chosen else ""
        print(f"{row['engine']:<14}{row['precision']:<10}{row['seconds_per_slice']:>9.3f}{row['speedup']:>9.2f}x"
              f"{row['max_diff']:>12.1e}{mark}")


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def add_backbones(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bench", type=POSITIVE, default=None, metavar="SLICES",
                   help="time every installed encoder engine on SLICES check images instead (ratios to PyTorch, "
                        "largest embedding difference, and which one --engine auto takes)")
    add_backbone(p, engine=False)
    add_device(p)


def cmd_config(args: argparse.Namespace) -> None:
    from medprompt.common.config import describe_configs, show_config

    if args.name is None:
        print(describe_configs())
    else:
        print(show_config(args.name, args.config, args.overrides), end="")


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", default=None, metavar="NAME",
                   help="a bundled config: acdc, camus, hc18, folder (preprocess), train, paper and encoder_prompts (train "
                        "--config NAME), demo; "
                        "none lists them")
    p.add_argument("--config", type=Path, default=None, help="a YAML file to apply on top, as the verbs would")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="an override to apply, as the verbs would (repeatable)")


VERBS = [
    Verb("backbones", cmd_backbones, add_backbones,
     "List the registered backbones: input, where their weights come from, whether they are installed.",
     "example: medprompt backbones --bench 10     (the encoder engines side by side on this machine)"),
    Verb("config", cmd_config, add_config, "Print a bundled config with every settable key and its default.",
     "example: medprompt config train\n"
     "         medprompt config acdc --set target=RV     (the config preprocess would use)"),
]
