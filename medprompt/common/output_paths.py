"""Output paths checked before any work: a verb that cannot write its output says so first, in one line.

Without this, `preprocess` into a path that is a file (or a folder another run is writing) read every case
before failing, and a folder the user may not write showed up as a traceback at the first file written.
"""

from __future__ import annotations

import os
from pathlib import Path

from medprompt.common.errors import MedpromptError
from medprompt.common.locking import check_unlocked


def check_output_folder(path: str | os.PathLike, what: str) -> Path:
    """Refuse a folder output (`what`, e.g. '--out') that is a file, lies inside a file, cannot be created, or
    that another medprompt process is writing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MedpromptError(f"{what} {path}: is a file; a folder is written there, choose another path")
    _check_creatable(path, what)
    check_unlocked(path)
    return path


def check_output_file(path: str | os.PathLike, what: str) -> Path:
    """Refuse a file output that is a folder, lies inside a file, or cannot be written (a file already there is
    replaced once the new one is complete, so its folder must be writable)."""
    path = Path(path)
    if path.is_dir():
        raise MedpromptError(f"{what} {path}: is a folder; a file is written there, choose another path")
    _check_creatable(path.parent, what)
    return path


def _check_creatable(path: Path, what: str) -> None:
    """The nearest existing ancestor of `path` (or `path` itself) must be a folder the user may write."""
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise MedpromptError(f"{what} {path}: {existing} is a file, so no folder can be made there; "
                             "choose another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MedpromptError(f"{what} {path}: {existing}: permission denied; choose another path")
