"""Write files under a temporary name and rename them when complete.

A crash then never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator


def partial_path(path: str | os.PathLike) -> Path:
    """The temporary name a file is written under before it is complete."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; rename it to `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    if tmp.exists():
        tmp.unlink()
    try:
        yield tmp
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    os.replace(tmp, path)
