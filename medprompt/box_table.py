"""Box tables on disk: the CSV columns of a box and a reader whose errors name the file."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from medprompt.errors import MedpromptError

BOX_COLUMNS = ("x_min", "y_min", "x_max", "y_max")


def read_table(path: str | os.PathLike, required: tuple[str, ...], what: str = "box file",
               allow_empty: bool = False) -> pd.DataFrame:
    """A CSV with the `required` columns (and at least one row unless allowed), or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise MedpromptError(f"{path}: {what} not found")
    try:
        table = pd.read_csv(path, dtype={"slice_id": str, "case": str})
    except pd.errors.EmptyDataError:
        raise MedpromptError(f"{path}: {what} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise MedpromptError(f"{path}: not a readable CSV ({exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise MedpromptError(f"{path}: missing columns {missing}; expected {','.join(required)}")
    if table.empty and not allow_empty:
        raise MedpromptError(f"{path}: {what} has a header but no boxes")
    return table
