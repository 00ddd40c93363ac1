"""Every registered method, with its own defaults, on what users run: LiteMedSAM with its installed weights, on
real ACDC slices, through the command line (`train` then `predict`), one short run each."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from helpers import SHARED_DATA
from medprompt.cli.main import main
from medprompt.methods import METHODS
from medprompt.training.recipe import load_train_config

pytestmark = pytest.mark.skipif(not (SHARED_DATA / "ACDC").is_dir(), reason="the real samples (../shared/data) are absent")


def run_cli(capsys, argv: list[str]) -> str:
    """Run a command: it must succeed and print no traceback; returns its stderr."""
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert code == 0, f"{argv}: exit {code}\n{err}"
    return err


def short_run(name: str) -> list[str]:
    """One epoch of the method's own recipe, on two slices unless the method fixes its shots."""
    shots = [] if load_train_config(name)["shots"] is not None else ["--shots", "2"]
    return ["--method", name, "--epochs", "1", *shots]


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_and_predicts_on_lite_medsam(name, lite_acdc, tmp_path, capsys):
    run, predictions = tmp_path / "run", tmp_path / "predictions"
    run_cli(capsys, ["train", str(lite_acdc), "--out", str(run), *short_run(name)])
    assert (run / "method.safetensors").stat().st_size > 0  # a model, not a collapse
    if METHODS[name].trainable and name != "persam_f":
        # the first epoch's predictions on the training slices already cover part of their boxes: the method did
        # not start from the empty mask, from which the losses cannot move it (PerSAM-F's trained first pass is a
        # point prompt, which a decoder trained on boxes draws nearly empty: its collapse check is off)
        log = pd.read_csv(run / "train_log.csv")
        assert len(log) == 1 and log.state[0] == "healthy" and log.box_fill[0] > 0.1, log
    run_cli(capsys, ["predict", str(run), str(lite_acdc), "--split", "test", "--out", str(predictions)])
    test_slices = pd.read_csv(lite_acdc / "manifest.csv").query("split == 'test'")
    files = sorted(predictions.glob("*.nii.gz"))
    assert [f.name for f in files] == [f"{case}.nii.gz" for case in test_slices.case.unique()]
    volume = np.asarray(nib.load(files[0]).dataobj)
    assert volume.shape == nib.load(test_slices.source_image.iloc[0]).shape  # the source volume's geometry
    assert set(np.unique(volume)) <= {0, 3}  # the target's label value, nothing else
