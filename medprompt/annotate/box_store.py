"""The box CSV an annotation session edits: read fresh before every change, one slice replaced, written atomically.

The file is `case, slice_index, x_min, y_min, x_max, y_max` in source pixels
(inclusive), the layout `medprompt train --boxes` reads. Each save re-reads the
file under a lock and replaces only the saved slice's rows, so two pages on the
same file never lose each other's boxes: the last save of a slice wins, and the
result says when the file had changed since the page last read it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from medprompt.common.atomic import atomic_path
from medprompt.common.locking import exclusive
from medprompt.data.boxes import BOX_COLUMNS, SOURCE_COLUMNS, read_source_table

SliceKey = tuple[str, int]
SliceBoxes = dict[SliceKey, list[list[int]]]


@dataclass(frozen=True)
class SaveResult:
    """What a save left in the file, and whether another writer had changed it since the page last read it."""

    version: str
    boxes: SliceBoxes
    changed_elsewhere: bool  # the file differed from the version the page had
    replaced_other: bool     # the saved slice's rows on disk were not the ones the page had shown


class BoxStore:
    """One box CSV, shared by every page (and process) that edits it."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.snapshot()  # a damaged file is refused before the page opens, never overwritten

    def snapshot(self) -> tuple[str, SliceBoxes]:
        """The file's version (a digest of its bytes; '' while it does not exist) and its boxes by slice."""
        table = self._table()
        return self._version(), _by_slice(table)

    def save_slice(self, case: str, slice_index: int, boxes: list[list[int]], seen_version: str,
                   seen_boxes: list[list[int]]) -> SaveResult:
        """Replace one slice's boxes in the file; `seen_*` is what the page had, to report other writers."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive(self.path.parent, "medprompt annotate", wait=True, lock_name=f".{self.path.name}.lock"):
            changed = self._version() != seen_version
            table = self._table()
            mine = (table.case == case) & (table.slice_index == slice_index)
            on_disk = _by_slice(table[mine]).get((case, slice_index), [])
            new = pd.DataFrame([(case, slice_index, *box) for box in boxes], columns=list(SOURCE_COLUMNS))
            table = pd.concat([table[~mine], new], ignore_index=True) if len(new) else table[~mine]
            table = table.sort_values(["case", "slice_index", *BOX_COLUMNS], kind="stable")
            with atomic_path(self.path) as tmp:
                table.to_csv(tmp, index=False)
            return SaveResult(self._version(), _by_slice(table), changed, sorted(on_disk) != sorted(seen_boxes))

    def _table(self) -> pd.DataFrame:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return pd.DataFrame({c: pd.Series(dtype=str if c == "case" else "int64") for c in SOURCE_COLUMNS})
        table = read_source_table(self.path)
        table["case"] = table["case"].astype(str)
        return table

    def _version(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()[:16] if self.path.exists() else ""


def _by_slice(table: pd.DataFrame) -> SliceBoxes:
    """{(case, slice_index): [[x_min, y_min, x_max, y_max], ...]} of a box table."""
    out: SliceBoxes = {}
    for row in table.itertuples(index=False):
        out.setdefault((str(row.case), int(row.slice_index)), []).append([int(round(getattr(row, c))) for c in BOX_COLUMNS])
    return out
