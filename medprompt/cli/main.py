"""The `medprompt` command line: one verb per step of the pipeline, one module per group of verbs."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Sequence

from medprompt import __version__
from medprompt.cli import annotate, benchmark, data, demo, evaluate, export, info, predict, train
from medprompt.cli.options import OneLineParser, Verb
from medprompt.common.errors import MedpromptError

DESCRIPTION = """\
Automatic segmentation with a frozen MedSAM-family model, learned from tight bounding boxes only.

Typical order: preprocess -> embed -> train -> predict -> evaluate (demo runs them all).
The default backbone is LiteMedSAM, whose weights come with the install; `medprompt backbones`
lists the others. Run `medprompt VERB --help` for a verb's options.
"""


VERBS: list[Verb] = [*data.VERBS, *annotate.VERBS, *train.VERBS, *predict.VERBS, *export.VERBS, *evaluate.VERBS, *demo.VERBS, *benchmark.VERBS, *info.VERBS]


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
