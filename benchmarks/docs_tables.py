"""Copy the tables `medprompt benchmark` wrote into the documents that show them, so no figure there is typed.

A document marks a generated block with `<!-- generated from PATH -->` ... `<!-- end generated -->`, PATH being
a file relative to the document (a benchmark's committed `summary.md`); the block's body is that file's text.

Run: python benchmarks/docs_tables.py            (rewrite the stale blocks of README.md and docs/)
     python benchmarks/docs_tables.py --check    (exit 1, naming them, if any block differs from its file)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- generated from (?P<source>\S+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def documents(root: Path) -> list[Path]:
    """The README and every Markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def refreshed(document: Path) -> tuple[str, list[str]]:
    """The document's text with every generated block set to its file; the blocks that were stale."""
    stale = []

    def body(match: re.Match) -> str:
        source = document.parent / match["source"]
        if not source.is_file():
            raise SystemExit(f"{document}: its generated block names {match['source']}, which does not exist")
        text = source.read_text()
        if text != match["body"]:
            stale.append(match["source"])
        return match.group(1) + text + match.group(4)

    return BLOCK.sub(body, document.read_text()), stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    parser.add_argument("--root", type=Path, default=ROOT, help="the project folder (default: this checkout)")
    args = parser.parse_args(argv)
    found = 0
    for document in documents(args.root):
        if not document.is_file():
            continue
        text, stale = refreshed(document)
        for source in stale:
            print(f"{document.relative_to(args.root)}: the block from {source} is stale")
        found += len(stale)
        if stale and not args.check:
            document.write_text(text)
    return 1 if found and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
