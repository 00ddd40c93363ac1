"""Verbs that describe what is installed: `backbones` and `config`."""

from __future__ import annotations

import argparse
from pathlib import Path

from medprompt.cli.options import Verb


def cmd_backbones(args: argparse.Namespace) -> None:
    from medprompt.backbones import describe_backbones

    print(describe_backbones())


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
    Verb("backbones", cmd_backbones, lambda p: None,
     "List the registered backbones: input, where their weights come from, whether they are installed.", ""),
    Verb("config", cmd_config, add_config, "Print a bundled config with every settable key and its default.",
     "example: medprompt config train\n"
     "         medprompt config acdc --set target=RV     (the config preprocess would use)"),
]
