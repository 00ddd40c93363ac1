"""Damaged or missing inputs end in one line and exit 2, naming the file, with nothing written.

The class of the hostile-input sweep that used to end in tracebacks: a dataset without its manifest, a
broken checkpoint, box files with bad rows, damaged run directories, prediction files without their
manifest.
"""

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from helpers import backbone_args, expect_error


def test_dataset_without_manifest(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    expect_error(capsys, ["embed", str(tmp_path / "empty")], str(tmp_path / "empty"), "no manifest.csv")


def test_manifest_row_whose_slice_is_missing(dataset_copy, capsys):
    manifest = pd.read_csv(dataset_copy / "manifest.csv")
    extra = manifest.iloc[[0]].assign(slice_id="ghost_s00")
    pd.concat([manifest, extra]).to_csv(dataset_copy / "manifest.csv", index=False)
    expect_error(capsys, ["embed", str(dataset_copy)], "slices.h5", "21 rows", "ghost_s00")


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
        ("slice_id,x_min,y_min,x_max,y_max\ncase00_s00,1,1,2,2\ncase00_s01,ten,1,20,20\n",
         "row 3: box coordinates must be numbers"),
        ("slice_id,x_min,y_min,x_max,y_max\ncase00_s00,1,1,inf,2\n", "row 2: box coordinates must be numbers"),
        ("case,slice_index,x_min,y_min,x_max,y_max\ncase00,first,1,1,2,2\n",
         "row 2: slice_index and box coordinates must be numbers"),
    ],
)
def test_bad_box_files(embedded, tiny_checkpoint, tmp_path, capsys, content, fragment):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(content)
    run = tmp_path / "run"
    expect_error(capsys, ["train", str(embedded), "--out", str(run), "--boxes", str(boxes), "--epochs", "1",
                          *backbone_args(tiny_checkpoint)], str(boxes), fragment)
    assert not run.exists()


def test_train_without_embeddings_says_what_to_run(dataset_copy, tiny_checkpoint, tmp_path, capsys):
    shutil.rmtree(dataset_copy / "embeddings", ignore_errors=True)
    expect_error(capsys, ["train", str(dataset_copy), "--out", str(tmp_path / "r"), *backbone_args(tiny_checkpoint)],
                 "medprompt embed")
    assert not (tmp_path / "r").exists()


def test_predict_needs_a_finished_run(embedded, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    expect_error(capsys, ["predict", str(tmp_path / "run"), str(embedded), "--out", str(tmp_path / "o")],
                 "not a run directory")


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
    from medprompt.inference.store import write_predictions

    dataset_rows = pd.read_csv(embedded / "manifest.csv", dtype={"slice_id": str}).iloc[:4]
    write_predictions(tmp_path / "p", dataset_rows, np.zeros((3, 64, 64), np.uint8), {"target_label": 1})
    expect_error(capsys, ["evaluate", str(tmp_path / "p"), str(embedded), "--out", str(tmp_path / "m.csv")],
                 "mask shape (3, 64, 64) does not match the 4 rows of manifest.csv")
    write_predictions(tmp_path / "q", dataset_rows, np.zeros((4, 32, 32), np.uint8), {"target_label": 1})
    expect_error(capsys, ["evaluate", str(tmp_path / "q"), str(embedded), "--out", str(tmp_path / "m.csv")],
                 "its slices are 32x32 pixels, those of", "64x64; evaluate predictions against the dataset")
    (tmp_path / "p" / "manifest.csv").unlink()
    expect_error(capsys, ["evaluate", str(tmp_path / "p"), str(embedded), "--out", str(tmp_path / "m.csv")],
                 "manifest.csv: missing")
    assert not (tmp_path / "m.csv").exists()


def damage_nifti_extension(path):
    """Rewrite a NIfTI so that its header announces an extension whose content runs past the end of the file."""
    import gzip
    import struct

    import nibabel as nib

    header = bytearray(nib.load(path).header.binaryblock)
    header[108:112] = struct.pack("<f", 368.0)  # vox_offset: room for one 16-byte extension
    extension = struct.pack("<4B", 1, 0, 0, 0) + struct.pack("<ii", 4096, 4)  # 4096 bytes claimed, 8 present
    with gzip.open(path, "wb") as handle:
        handle.write(bytes(header) + extension + bytes(8))


def test_a_nifti_with_a_damaged_extension_is_skipped_with_its_reason(tmp_path, capsys):
    from medprompt.cli.main import main
    from preprocessing.phantoms import write_acdc

    raw = write_acdc(tmp_path / "raw", n_patients=3, seed=0)
    damaged = next(raw.rglob("patient002_frame01.nii.gz"))
    damage_nifti_extension(damaged)
    assert main(["preprocess", "acdc", str(raw), str(tmp_path / "out"), "--set", "geometry.size=64"]) == 0
    out = capsys.readouterr().out
    assert f"{damaged}: unreadable or truncated NIfTI (failed to read extension content)" in out
    assert "acdc: 2 cases" in out
