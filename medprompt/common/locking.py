"""One writer at a time per output folder: an advisory lock whose file names its holder.

A second `embed` on the same dataset (or `train` into the same run, ...)
stops with a line naming the running one instead of truncating its files.
The lock goes with the process, so a killed run leaves none behind. On
systems without `fcntl` (Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Iterator

from medprompt.common.errors import MedpromptError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

LOCK = ".medprompt.lock"


@contextlib.contextmanager
def exclusive(folder: str | os.PathLike, what: str, wait: bool = False, lock_name: str = LOCK) -> Iterator[None]:
    """Hold `folder`'s lock for the block, as `what` (e.g. 'medprompt embed'); refuse when another holds it, or
    with `wait` (for shared caches whose writer is quick) wait until it is free. `lock_name` names a lock of
    one file in the folder rather than of the whole folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(folder / lock_name, "a+") as handle:
        if wait:
            fcntl.flock(handle, fcntl.LOCK_EX)
        else:
            _lock_or_refuse(handle, folder)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{what} (pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_unlocked(folder: str | os.PathLike) -> None:
    """Refuse now, before any work, when another process holds `folder`'s lock; creates nothing."""
    path = Path(folder) / LOCK
    if fcntl is None or not path.is_file():
        return
    with open(path) as handle:
        _lock_or_refuse(handle, Path(folder))
        fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_or_refuse(handle, folder: Path) -> None:
    """Take the lock on the open lock file, or raise the line that names its holder."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another medprompt process"
        raise MedpromptError(f"{folder}: {holder} is writing here; let it finish (or stop it), then run again") from None
