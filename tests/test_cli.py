"""The command line end to end on a synthetic dataset, and its answers to bad input."""

import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from medprompt.cli import main
from tiny_backbone import BOX_SUPERVISION, NO_COLLAPSE_CHECK


@pytest.fixture()
def embedded(dataset_copy, tiny_checkpoint):
    assert main(["embed", str(dataset_copy), "--backbone", "tiny_test", "--checkpoint", str(tiny_checkpoint)]) == 0
    return dataset_copy


def backbone_args(tiny_checkpoint):
    """Backbone and plumbing options for `train` on the random tiny backbone."""
    return ["--backbone", "tiny_test", "--checkpoint", str(tiny_checkpoint), "--set", NO_COLLAPSE_CHECK,
            "--set", BOX_SUPERVISION]


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


def test_unknown_method_or_supervision_it_does_not_take_is_one_line(embedded, tiny_checkpoint, tmp_path, capsys):
    assert main(["train", str(embedded), "--out", str(tmp_path / "a"), "--method", "transunet",
                 *backbone_args(tiny_checkpoint)]) == 2
    assert "--method transunet: unknown; available: autosam, box_prompted, conv_fc, persam" in capsys.readouterr().err
    assert main(["train", str(embedded), "--out", str(tmp_path / "b"), "--method", "box_prompted", "--supervision",
                 "masks", *backbone_args(tiny_checkpoint)]) == 2
    assert "method box_prompted learns from boxes only" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_box_prompted_upper_bound_output(embedded, tiny_checkpoint, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(embedded), "--out", str(run), "--shots", "2", "--epochs", "1",
                 *backbone_args(tiny_checkpoint)]) == 0
    assert main(["predict", str(run), str(embedded), "--out", str(tmp_path / "ub"), "--box-prompt"]) == 0
    with h5py.File(tmp_path / "ub" / "predictions.h5", "r") as f:
        assert f["mask"].shape == (20, 64, 64) and f.attrs["box_prompt"] == 1


def expect_error(capsys, argv, *fragments):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_dataset_without_manifest(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    expect_error(capsys, ["embed", str(tmp_path / "empty")], str(tmp_path / "empty"), "no manifest.csv")


def test_manifest_row_whose_slice_is_missing(dataset_copy, capsys):
    manifest = pd.read_csv(dataset_copy / "manifest.csv")
    extra = manifest.iloc[[0]].assign(slice_id="ghost_s00")
    pd.concat([manifest, extra]).to_csv(dataset_copy / "manifest.csv", index=False)
    expect_error(capsys, ["embed", str(dataset_copy)], "slices.h5", "21 rows", "ghost_s00")


def test_float_slices_with_nan_are_refused_before_encoding(dataset_copy, capsys):
    with h5py.File(dataset_copy / "slices.h5", "r+") as f:
        images = f["image"][:].astype(np.float32)
        images[0, 0, 0] = np.nan
        del f["image"]
        f["image"] = images
    expect_error(capsys, ["embed", str(dataset_copy)], "slices.h5: 'image' must be uint8 [N,H,W]", "float32")
    assert not (dataset_copy / "embeddings").exists()


def test_corrupted_checkpoint(dataset_copy, tmp_path, tiny_checkpoint, capsys):
    bad = tmp_path / "medsam_vit_b.pth"
    bad.write_bytes(tiny_checkpoint.read_bytes()[:1000])
    expect_error(capsys, ["embed", str(dataset_copy), "--checkpoint", str(bad)], str(bad), "not a readable")
    assert not (dataset_copy / "embeddings" / "medsam_vit_b.h5").exists()


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("slice_id,x_min,y_min,x_max,y_max\ncase00_s00,10,10,80,30\n", "outside the 64x64 image"),
        ("slice_id,x_min,y_min,x_max,y_max\ncase00_s00,-1,10,20,30\n", "outside the 64x64 image"),
        ("", "box file is empty"),
        ("slice_id,x_min,y_min,x_max,y_max\n", "no boxes"),
        ("slice_id,x_min,y_min,x_max,y_max\nnope,1,1,2,2\n", "not in"),
    ],
)
def test_bad_box_files(embedded, tiny_checkpoint, tmp_path, capsys, content, fragment):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(content)
    run = tmp_path / "run"
    expect_error(capsys, ["train", str(embedded), "--out", str(run), "--boxes", str(boxes), "--epochs", "1",
                          *backbone_args(tiny_checkpoint)], str(boxes), fragment)
    assert not (run / "config.yaml").exists()


def test_train_without_embeddings_says_what_to_run(dataset_copy, tiny_checkpoint, tmp_path, capsys):
    shutil.rmtree(dataset_copy / "embeddings", ignore_errors=True)
    expect_error(capsys, ["train", str(dataset_copy), "--out", str(tmp_path / "r"), *backbone_args(tiny_checkpoint)],
                 "medprompt embed")
    assert not (tmp_path / "r").exists()


def test_a_network_on_the_slices_trains_and_predicts_without_embeddings(dataset_copy, tiny_checkpoint, tmp_path):
    shutil.rmtree(dataset_copy / "embeddings", ignore_errors=True)
    run = tmp_path / "run"
    assert main(["train", str(dataset_copy), "--out", str(run), "--method", "unet", "--shots", "2", "--epochs", "1",
                 "--set", "unet.channels=[4,8]", *backbone_args(tiny_checkpoint)]) == 0
    assert main(["predict", str(run), str(dataset_copy), "--out", str(tmp_path / "pred"), "--split", "test"]) == 0
    with h5py.File(tmp_path / "pred" / "predictions.h5", "r") as f:
        assert f["mask"].shape == (4, 64, 64) and f.attrs["method"] == "unet"
    assert not (dataset_copy / "embeddings").exists()


def test_predict_needs_a_finished_run(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    expect_error(capsys, ["predict", str(tmp_path / "run"), str(tmp_path / "run"), "--out", str(tmp_path / "o")],
                 "not a run directory")


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


def test_requests_that_cannot_work_are_refused_before_any_model_loads(embedded, tiny_checkpoint, tmp_path, capsys,
                                                                      monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("medprompt.backbones.load_backbone", no_model)
    monkeypatch.setattr("medprompt.predict_io.load_trained", no_model)
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


def test_predict_never_writes_over_its_inputs(embedded, tmp_path, capsys):
    image = tmp_path / "in" / "scan.png"
    image.parent.mkdir()
    image.write_bytes(b"not overwritten")
    expect_error(capsys, ["predict", str(tmp_path / "run"), str(image), "--out", str(image.parent)],
                 f"--out {image.parent}: is the folder of the input {image}")
    expect_error(capsys, ["predict", str(tmp_path / "run"), str(embedded), "--out", str(embedded / "pred")],
                 "is the folder of the input")
    assert image.read_bytes() == b"not overwritten" and not (embedded / "pred").exists()


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


@pytest.fixture()
def finished_run(embedded, tiny_checkpoint, tmp_path):
    run = tmp_path / "run"
    assert main(["train", str(embedded), "--out", str(run), "--shots", "2", "--epochs", "1",
                 *backbone_args(tiny_checkpoint)]) == 0
    return run


def truncate_weights(run):
    path = run / "method.safetensors"
    path.write_bytes(path.read_bytes()[:300])


def foreign_weights(run):
    save_file({"w": torch.zeros(3)}, str(run / "method.safetensors"))


@pytest.mark.parametrize("damage, fragment", [
    (truncate_weights, "method.safetensors: damaged or not this run's conv_fc weights"),
    (foreign_weights, "method.safetensors: damaged or not this run's conv_fc weights"),
    (lambda run: (run / "config.yaml").write_text("dataset: [unclosed\n"), "config.yaml: not valid YAML at line"),
    (lambda run: (run / "config.yaml").write_text("dataset: {}\n"), "config.yaml: incomplete run config (no dataset."),
])
def test_a_damaged_run_is_named_in_one_line(finished_run, embedded, tmp_path, capsys, damage, fragment):
    damage(finished_run)
    capsys.readouterr()
    expect_error(capsys, ["predict", str(finished_run), str(embedded), "--out", str(tmp_path / "p")], fragment)
    assert not (tmp_path / "p").exists()


def test_a_damaged_resume_state_or_missing_boxes_are_named(finished_run, embedded, tiny_checkpoint, capsys):
    resume = ["train", str(embedded), "--out", str(finished_run), "--resume", "--backbone", "tiny_test",
              "--checkpoint", str(tiny_checkpoint)]
    torch.save({"epoch": 1}, finished_run / "resume_state.pt")
    capsys.readouterr()
    expect_error(capsys, resume, "resume_state.pt: cannot resume from this state")
    (finished_run / "train_boxes.csv").unlink()
    expect_error(capsys, resume, "train_boxes.csv: missing")


def test_evaluate_refuses_a_predictions_file_without_its_manifest_or_of_another_shape(embedded, tmp_path, capsys):
    from medprompt.prediction_store import write_predictions

    dataset_rows = pd.read_csv(embedded / "manifest.csv", dtype={"slice_id": str}).iloc[:4]
    write_predictions(tmp_path / "p", dataset_rows, np.zeros((3, 64, 64), np.uint8), {"target_label": 1})
    expect_error(capsys, ["evaluate", str(tmp_path / "p"), str(embedded), "--out", str(tmp_path / "m.csv")],
                 "mask shape (3, 64, 64) does not match the 4 rows of manifest.csv")
    (tmp_path / "p" / "manifest.csv").unlink()
    expect_error(capsys, ["evaluate", str(tmp_path / "p"), str(embedded), "--out", str(tmp_path / "m.csv")],
                 "manifest.csv: missing")
    assert not (tmp_path / "m.csv").exists()


def test_output_paths_that_are_files_or_folders_the_wrong_way_round(embedded, tiny_checkpoint, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", str(embedded), "--out", str(run), "--shots", "2", "--epochs", "1",
                 *backbone_args(tiny_checkpoint)]) == 0
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    capsys.readouterr()
    expect_error(capsys, ["predict", str(run), str(embedded), "--out", str(a_file)], str(a_file), "choose another path")
    assert a_file.read_text() == "mine"
    assert main(["predict", str(run), str(embedded), "--out", str(tmp_path / "p")]) == 0
    (tmp_path / "a_folder.csv").mkdir()
    capsys.readouterr()
    expect_error(capsys, ["evaluate", str(tmp_path / "p"), str(embedded), "--out", str(tmp_path / "a_folder.csv")],
                 "a_folder.csv", "choose another path")
