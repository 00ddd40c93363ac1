"""The command line end to end on a synthetic dataset: every verb, method and help text.

Its refusals of bad input are tested by class, in the test_refused_*, test_silent_successes,
test_partial_outputs, test_outputs_confined, test_interrupted_runs, test_concurrent_writers and
test_deterministic_outputs files.
"""

import shutil

import h5py
import pandas as pd
import pytest

from helpers import backbone_args, expect_error
from medprompt.cli.main import main


def test_embed_train_predict_evaluate(embedded, tiny_checkpoint, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(embedded), "--out", str(run), "--shots", "4", "--seed", "1", "--epochs", "2",
                 *backbone_args(tiny_checkpoint)]) == 0
    assert (run / "method.safetensors").exists()
    pred = tmp_path / "pred"
    assert main(["predict", str(run), str(embedded), "--out", str(pred), "--split", "test"]) == 0
    with h5py.File(pred / "predictions.h5", "r") as f:
        assert f["mask"].shape == (4, 64, 64)
        assert set(f["mask"][:].ravel()) <= {0, 1}
    assert main(["evaluate", str(pred), str(embedded), "--out", str(tmp_path / "m.csv")]) == 0
    table = pd.read_csv(tmp_path / "m.csv")
    assert len(table) == 4 and {"slice_id", "dice", "iou", "hd95", "has_target"} <= set(table.columns)
    assert table.dice.between(0, 1).all()
    assert "slices with target: dice" in capsys.readouterr().out
    assert (tmp_path / "m_summary.csv").exists()


@pytest.mark.parametrize("method, supervision", [("ptsam", "masks"), ("sam_sp", "boxes"), ("box_prompted", "boxes")])
def test_every_method_through_the_command_line(embedded, tiny_checkpoint, tmp_path, capsys, method, supervision):
    run = tmp_path / "run"
    assert main(["train", str(embedded), "--out", str(run), "--method", method, "--supervision", supervision,
                 "--shots", "4", "--epochs", "1", *backbone_args(tiny_checkpoint)]) == 0
    assert f"trained {method}: {run}" in capsys.readouterr().out
    recorded = (run / "config.yaml").read_text()
    assert f"method: {method}" in recorded and f"supervision: {supervision}" in recorded
    assert main(["predict", str(run), str(embedded), "--out", str(tmp_path / "pred"), "--split", "test"]) == 0
    with h5py.File(tmp_path / "pred" / "predictions.h5", "r") as f:
        assert f["mask"].shape == (4, 64, 64) and f.attrs["method"] == method


def test_box_prompted_upper_bound_output(embedded, tiny_checkpoint, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(embedded), "--out", str(run), "--shots", "2", "--epochs", "1",
                 *backbone_args(tiny_checkpoint)]) == 0
    assert main(["predict", str(run), str(embedded), "--out", str(tmp_path / "ub"), "--box-prompt"]) == 0
    with h5py.File(tmp_path / "ub" / "predictions.h5", "r") as f:
        assert f["mask"].shape == (20, 64, 64) and f.attrs["box_prompt"] == 1


def test_a_network_on_the_slices_trains_and_predicts_without_embeddings(dataset_copy, tiny_checkpoint, tmp_path):
    shutil.rmtree(dataset_copy / "embeddings", ignore_errors=True)
    run = tmp_path / "run"
    assert main(["train", str(dataset_copy), "--out", str(run), "--method", "unet", "--shots", "2", "--epochs", "1",
                 "--set", "unet.channels=[4,8]", *backbone_args(tiny_checkpoint)]) == 0
    assert main(["predict", str(run), str(dataset_copy), "--out", str(tmp_path / "pred"), "--split", "test"]) == 0
    with h5py.File(tmp_path / "pred" / "predictions.h5", "r") as f:
        assert f["mask"].shape == (4, 64, 64) and f.attrs["method"] == "unet"
    assert not (dataset_copy / "embeddings").exists()


def test_resume_reads_the_recorded_settings_and_names_a_changed_one(embedded, tiny_checkpoint, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(embedded), "--out", str(run), "--shots", "3", "--seed", "1", "--epochs", "2",
                 *backbone_args(tiny_checkpoint)]) == 0
    (run / "method.safetensors").unlink()  # as if killed before the end
    assert main(["train", str(embedded), "--out", str(run), "--resume", "--backbone", "tiny_test",
                 "--checkpoint", str(tiny_checkpoint)]) == 0
    assert (run / "method.safetensors").exists()
    capsys.readouterr()
    expect_error(capsys, ["train", str(embedded), "--out", str(run), "--resume", "--shots", "4", "--backbone",
                          "tiny_test", "--checkpoint", str(tiny_checkpoint)], "train.shots: recorded 3, now 4")


def test_config_verb_lists_and_shows_settable_keys(capsys):
    assert main(["config"]) == 0
    listing = capsys.readouterr().out
    assert all(f"  {name} " in listing for name in ("acdc", "camus", "hc18", "train", "paper", "demo"))
    assert main(["config", "train"]) == 0
    shown = capsys.readouterr().out
    assert "refine:" in shown and "# " in shown  # the bundled file, comments included
    assert main(["config", "paper"]) == 0
    paper = capsys.readouterr().out
    assert "prompt_offset: none" in paper and "lr: 0.001" in paper  # train's keys, paper's values
    assert main(["config", "acdc", "--set", "target=RV"]) == 0
    assert "target: RV" in capsys.readouterr().out
    expect_error(capsys, ["config", "nope"], "no bundled config 'nope'")


def test_help_of_every_verb(capsys):
    for verb in ("preprocess", "embed", "train", "predict", "reconstruct", "evaluate", "demo", "backbones", "config"):
        with pytest.raises(SystemExit) as exit_info:
            main([verb, "--help"])
        assert exit_info.value.code == 0
        assert "usage: medprompt " + verb in capsys.readouterr().out
