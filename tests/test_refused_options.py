"""Bad options and `--set` values end in one line and exit 2, naming the option and what it takes.

Checked against each verb's rules before any work starts: nothing is read beyond the config, no model
loads and no output folder appears.
"""

import pandas as pd
import pytest

from helpers import backbone_args, expect_error
from medprompt.cli.main import main


@pytest.mark.parametrize("argv, fragment", [
    (["embed", "DATA", "--batch-size", "0"], "argument --batch-size: 0 is below the smallest allowed, 1"),
    (["embed", "DATA", "--batch-size", "four"], "argument --batch-size: 'four' is not a whole number"),
    (["train", "DATA", "--out", "OUT", "--seed", "-1"], "argument --seed: -1 is below the smallest allowed, 0"),
    (["train", "DATA", "--out", "OUT", "--supervision", "labels"], "argument --supervision: invalid choice"),
    (["train", "DATA"], "the following arguments are required: --out"),
    (["predict", "RUN", "DATA", "--out", "OUT", "--split", "holdout"], "argument --split: invalid choice"),
    (["demo", "--epochs", "-2"], "argument --epochs: -2 is below the smallest allowed, 1"),
    (["segment", "DATA"], "argument VERB: invalid choice: 'segment'"),
])
def test_a_malformed_command_line_is_one_line_that_points_at_help(tmp_path, capsys, argv, fragment):
    argv = [str(tmp_path / a) if a.isupper() else a for a in argv]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    assert fragment in err and err.endswith("--help`"), err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("setting, fragment", [
    ("epochs=abc", "config key epochs: 'abc' is not allowed; it takes a whole number >= 1"),
    ("batch_size=0", "config key batch_size: 0 is not allowed"),
    ("lr=-1", "config key lr: -1 is not allowed; it takes a number >= 1e-12"),
    ("loss.size_bounds=0.5", "it takes a list of 2 numbers in [0, 1], increasing"),
    ("refine=3", "config key refine: 3 is not allowed; it is a section of keys (refine.box_margin, "),
    ("nokey=1", "override 'nokey=1': unknown key 'nokey'"),
    ("augment.rotate=[1,2]", "config key augment.rotate: [1, 2] is not allowed"),
])
def test_train_settings_out_of_range_are_named(embedded, tmp_path, capsys, setting, fragment):
    expect_error(capsys, ["train", str(embedded), "--out", str(tmp_path / "run"), "--set", setting], fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("setting, fragment", [
    ("geometry.size=0", "config key geometry.size: 0 is not allowed; it takes a whole number in [16, 4096]"),
    ("geometry.target_spacing=[0,1]", "it takes null or a list of 2 numbers >= 1e-06"),
    ("geometry.target_spacing=1.0", "config key geometry.target_spacing: 1.0 is not allowed"),
    ("intensity.percentiles=[-1,101]", "it takes a list of 2 numbers in [0, 100], increasing"),
    ("labels=3", "config key labels: 3 is not allowed; it takes a mapping of label values >= 1 to names"),
    ("labels={0: background}", "config key labels: {0: 'background'} is not allowed"),
    ("target=XX", "target 'XX' is not one of acdc labels"),
    ("frames=3", "config key frames: 3 is not allowed; it takes a list of words from ['ED', 'ES']"),
    ("frames=[ED,XX]", "config key frames: ['ED', 'XX'] is not allowed"),
    ("splits=text", "config key splits: 'text' is not allowed; it is a section of keys (splits.seed, splits.sizes)"),
    ("splits.sizes=[6,2,4]", "config key splits.sizes: [6, 2, 4] is not allowed; it takes a mapping of words from "
                             "['train', 'val', 'test'] to whole numbers >= 0"),
    ("splits.sizes={train: 6, tset: 2}", "config key splits.sizes"),
])
def test_preprocess_settings_out_of_range_are_named(tmp_path, capsys, setting, fragment):
    raw = tmp_path / "raw"
    raw.mkdir()
    expect_error(capsys, ["preprocess", "acdc", str(raw), str(tmp_path / "out"), "--set", setting], fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("device, fragment", [
    ("tpu", "--device 'tpu': not a device; use auto, cpu, cuda or cuda:N"),
    ("cuda:x", "--device 'cuda:x': not a device"),
])
def test_an_unknown_device_is_named(embedded, capsys, device, fragment):
    expect_error(capsys, ["embed", str(embedded), "--device", device], fragment)
    assert not (embedded / "embeddings" / "lite_medsam.h5").exists()


def test_unknown_method_or_supervision_it_does_not_take_is_one_line(embedded, tiny_checkpoint, tmp_path, capsys):
    assert main(["train", str(embedded), "--out", str(tmp_path / "a"), "--method", "transunet",
                 *backbone_args(tiny_checkpoint)]) == 2
    assert "--method transunet: unknown; available: autosam, box_prompted, conv_fc, persam" in capsys.readouterr().err
    assert main(["train", str(embedded), "--out", str(tmp_path / "b"), "--method", "box_prompted", "--supervision",
                 "masks", *backbone_args(tiny_checkpoint)]) == 2
    assert "method box_prompted learns from boxes only" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_requests_that_cannot_work_are_refused_before_any_model_loads(embedded, tiny_checkpoint, tmp_path, capsys,
                                                                      monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("medprompt.backbones.load_backbone", no_model)
    monkeypatch.setattr("medprompt.inference.predict.load_trained", no_model)
    expect_error(capsys, ["train", str(embedded), "--out", str(tmp_path / "r"), "--shots", "50"],
                 "--shots 50: the train split of", "has only 9 slices with the target")
    assert not (tmp_path / "r").exists()
    expect_error(capsys, ["train", str(embedded), "--out", str(tmp_path / "r"), "--set", "refine.min_island=3"],
                 "config key refine.min_island: 3 is not allowed")
    manifest = pd.read_csv(embedded / "manifest.csv")
    manifest.loc[manifest.split == "test", "split"] = "train"
    manifest.to_csv(embedded / "manifest.csv", index=False)
    expect_error(capsys, ["predict", str(tmp_path), str(embedded), "--split", "test", "--out", str(tmp_path / "p")],
                 "no slice in split ['test'] (its splits: ['train', 'val'])", "splits.sizes=")
