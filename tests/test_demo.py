"""`medprompt demo` end to end on synthetic ACDC-like data with LiteMedSAM, and the evaluation notebook on its run."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from medprompt.cli.demo_pipeline import run_demo
from medprompt.common.config import load_config, read_yaml
from medprompt.methods.run_dir import CONFIG
from preprocessing.phantoms import write_acdc

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "evaluate.ipynb"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo on a download of 6 synthetic patients for 15 epochs (the phantoms' loss levels off by then); the
    README test runs `medprompt demo` itself: 7 patients, 50 epochs, 2 to 3 more minutes."""
    root = tmp_path_factory.mktemp("demo")
    raw = write_acdc(root / "raw", n_patients=6, seed=0)
    out = root / "out"
    table = run_demo(out, data=raw, epochs=15, progress=False)
    return out, table


def test_ten_shot_box_only_segments_every_held_out_patient(demo):
    out, table = demo
    assert len(table) == 2  # the patients drawn for test (the demo's split, 3:1:3, scaled to 6 patients)
    assert table.dice_box_prompted.min() >= 0.95  # LiteMedSAM given the true boxes: the geometry is right end to end
    # the learned prompts leave no held-out patient empty; they stay well below the box-prompted bound on
    # LiteMedSAM (docs/results.md)
    assert table.dice.min() > 0.1 and table.dice.mean() >= 0.55
    assert len(list((out / "run" / "predictions").glob("*.nii.gz"))) == len(table)
    assert len(list((out / "run" / "overlays").glob("*_largest.png"))) == len(table)
    assert len(list((out / "run" / "overlays").glob("*_worst.png"))) == len(table)


def test_the_demo_trains_with_its_own_epochs_and_precision(demo):
    out, _ = demo
    train = read_yaml(out / "run" / CONFIG)["train"]
    assert (train["epochs"], train["cpu_precision"]) == (15, load_config("demo")["cpu_precision"]) == (15, "auto")


def test_notebook_runs_top_to_bottom_on_the_demo_run(demo, monkeypatch):
    out, table = demo
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), "stored with outputs"
    shutil.rmtree(out / "run" / "overlays")  # as for a run the demo did not make: the notebook draws them
    monkeypatch.setenv("MEDPROMPT_RUN", str(out / "run"))
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(out)}}).execute()
    text = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "section skipped" not in text
    images = sum("image/png" in o.get("data", {}) for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert images >= 3  # box plots, learning curves, overlays
    assert len(list((out / "run" / "overlays").glob("*.png"))) == 2 * len(table)  # each case's largest and worst slice
