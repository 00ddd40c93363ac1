"""Helpers shared by the tests: where the real samples are, an independent Dice, an interruption, and the
command line's one-line refusals."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from medprompt.cli.main import main
from tiny_backbone import BOX_SUPERVISION, NO_COLLAPSE_CHECK

SHARED_DATA = Path(os.environ.get("MEDPROMPT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two binary masks (1 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * (a & b).sum() / total)


def interrupt_on_call(monkeypatch, owner: type, name: str, call: int) -> Callable[[], None]:
    """Make `owner.name` raise KeyboardInterrupt (as a kill would stop it) on its `call`-th call; returns the
    function that puts the original back."""
    original, calls = getattr(owner, name), {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, interrupted)
    return lambda: monkeypatch.setattr(owner, name, original)


def tiny_backbone_args(tiny_checkpoint: Path) -> list[str]:
    """The options that select the random tiny backbone (embed, train, resume)."""
    return ["--backbone", "tiny_test", "--checkpoint", str(tiny_checkpoint)]


def backbone_args(tiny_checkpoint: Path) -> list[str]:
    """Backbone and plumbing options for a new `train` on the random tiny backbone."""
    return [*tiny_backbone_args(tiny_checkpoint), "--set", NO_COLLAPSE_CHECK, "--set", BOX_SUPERVISION]


def expect_error(capsys, argv: list[str], *fragments: str) -> str:
    """Run the command line: it must exit 2 with one line on stderr holding every fragment; returns that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err
