"""A refused command leaves nothing half-done: every input is checked before the first output is written, so
the corrected command runs into the same --out, and no output ever replaces an input.
"""

import shutil

import nibabel as nib
import numpy as np

from helpers import backbone_args, expect_error
from medprompt.cli.main import main


def test_a_refused_train_leaves_no_run_and_the_corrected_one_runs_in_its_place(embedded, tiny_checkpoint, tmp_path,
                                                                               capsys):
    boxes, run = tmp_path / "boxes.csv", tmp_path / "run"
    boxes.write_text("slice_id,x_min,y_min,x_max,y_max\ncase00_s00,10,10,30,30\ncase00_s01,12,12,90,40\n")
    expect_error(capsys, ["train", str(embedded), "--out", str(run), "--boxes", str(boxes), "--epochs", "1",
                          *backbone_args(tiny_checkpoint)], "row 3 box (12, 12, 90, 40)")
    assert not run.exists()
    boxes.write_text("slice_id,x_min,y_min,x_max,y_max\ncase00_s00,10,10,30,30\ncase00_s01,12,12,50,40\n")
    assert main(["train", str(embedded), "--out", str(run), "--boxes", str(boxes), "--epochs", "1",
                 *backbone_args(tiny_checkpoint)]) == 0
    assert (run / "method.safetensors").exists()


def test_predict_checks_every_input_before_writing_the_first_output(acdc_run, tmp_path, capsys):
    good = next(acdc_run.raw.rglob("patient001_frame01.nii.gz"))
    blank = tmp_path / "blank.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 3), np.float32), np.eye(4)), blank)
    expect_error(capsys, ["predict", str(acdc_run.run), str(good), str(blank), "--out", str(tmp_path / "out")],
                 f"{blank}: blank image")
    expect_error(capsys, ["predict", str(acdc_run.run), str(acdc_run.dataset), str(tmp_path / "absent.nii.gz"),
                          "--out", str(tmp_path / "out")], "absent.nii.gz: input not found")
    assert not (tmp_path / "out").exists()


def test_reconstruct_checks_its_array_before_writing(acdc_run, tmp_path, capsys):
    expect_error(capsys, ["reconstruct", str(acdc_run.dataset), f"{acdc_run.dataset / 'slices.h5'}:probability",
                          "--out", str(tmp_path / "out")], "no array 'probability'")
    assert not (tmp_path / "out").exists()


def test_a_dataset_copied_without_its_slices_is_refused_before_any_model_loads(acdc_run, tmp_path, capsys):
    copy = tmp_path / "dataset"
    shutil.copytree(acdc_run.dataset, copy, ignore=shutil.ignore_patterns("slices.h5", "embeddings"))
    expect_error(capsys, ["predict", str(acdc_run.run), str(copy), "--out", str(tmp_path / "out")], "slices.h5")
    assert not (tmp_path / "out").exists()


def test_predict_never_writes_over_its_inputs(embedded, tmp_path, capsys):
    image = tmp_path / "in" / "scan.png"
    image.parent.mkdir()
    image.write_bytes(b"not overwritten")
    expect_error(capsys, ["predict", str(tmp_path / "run"), str(image), "--out", str(image.parent)],
                 f"--out {image.parent}: is the folder of the input {image}")
    expect_error(capsys, ["predict", str(tmp_path / "run"), str(embedded), "--out", str(embedded / "pred")],
                 "is the folder of the input")
    assert image.read_bytes() == b"not overwritten" and not (embedded / "pred").exists()


def test_a_manifest_without_its_geometry_columns_is_refused_before_predict_writes(acdc_run, tmp_path, capsys):
    import pandas as pd

    copy = tmp_path / "dataset"
    shutil.copytree(acdc_run.dataset, copy)
    manifest = pd.read_csv(copy / "manifest.csv")
    manifest.drop(columns=["src_height", "offset_y"]).to_csv(copy / "manifest.csv", index=False)
    expect_error(capsys, ["predict", str(acdc_run.run), str(copy), "--out", str(tmp_path / "out")],
                 f"{copy / 'manifest.csv'}: manifest lacks the geometry columns ['src_height', 'offset_y']")
    assert not (tmp_path / "out").exists()


def test_a_collapsed_new_run_leaves_no_run_behind_and_the_same_command_runs_again(embedded, tiny_checkpoint,
                                                                                  tmp_path, capsys):
    import pandas as pd

    run = tmp_path / "run"
    train = ["train", str(embedded), "--out", str(run), "--shots", "2", "--epochs", "1",
             "--backbone", "tiny_test", "--checkpoint", str(tiny_checkpoint), "--set", "collapse.max_recoveries=0"]
    collapsing = [*train, "--set", "collapse.empty_below=1.0"]  # every epoch counts as empty
    assert main(collapsing) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "medprompt train: error:" in line]
    assert len(errors) == 1 and "training collapsed" in errors[0] and "no model written" in errors[0]
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".")) == ["train_log.csv"]  # what happened
    assert pd.read_csv(run / "train_log.csv").state.tolist() == ["empty: collapsed, no model written"]
    assert main(collapsing) == 2  # the same command is not refused as "already holds a run"
    assert main([*train, "--set", "collapse.empty_below=0.0", "--set", "collapse.full_above=1.0"]) == 0
    assert (run / "method.safetensors").is_file()
