"""The README's step-by-step pipeline, run line by line as written, on the project's real samples."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from medprompt.cli import main
from helpers import SHARED_DATA

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> dict[str, list[list[str]]]:
    """Commands per dataset: each block of lines starting at its `preprocess`."""
    block = re.search(r"<!-- readme-pipeline -->\n```bash\n(.*?)```", README.read_text(), re.S).group(1)
    groups: dict[str, list[list[str]]] = {}
    current = None
    for line in block.splitlines():
        if not line.startswith("medprompt "):
            continue
        argv = shlex.split(line.replace("$DATA", str(SHARED_DATA)), comments=True)[1:]
        if argv[0] == "preprocess":
            current = argv[1]
        groups.setdefault(current, []).append(argv)
    return groups


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the real samples (../shared/data) are absent")
@pytest.mark.parametrize("dataset", ["acdc", "camus", "hc18"])
def test_readme_pipeline_runs_as_written(dataset, tmp_path, monkeypatch):
    assert re.search(r"^DATA=\.\./shared/data$", README.read_text(), re.M), "the block names the samples' folder"
    monkeypatch.chdir(tmp_path)
    commands = readme_commands()[dataset]
    assert [argv[0] for argv in commands][:5] == ["preprocess", "embed", "train", "predict", "evaluate"]
    for argv in commands:
        assert main(argv) == 0, argv
    scores = pd.read_csv(tmp_path / "metrics" / f"{dataset}_2d.csv")
    assert scores.dice[scores.has_target].mean() > 0.5  # a learned segmenter, not an empty one
