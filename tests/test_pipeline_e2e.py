"""A user's path through every verb on a synthetic ACDC download: preprocess, embed, train from
boxes drawn on the original images, predict raw volumes and a dataset, reconstruct, evaluate in mm."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from helpers import tiny_backbone_args
from medprompt.cli.main import main
from medprompt.data.boxes import boxes_from_mask
from preprocessing.phantoms import write_acdc
from tiny_backbone import BOX_SUPERVISION, NO_COLLAPSE_CHECK


@pytest.fixture(scope="module")
def raw_acdc(tmp_path_factory):
    return write_acdc(tmp_path_factory.mktemp("raw"), n_patients=4, seed=11)


def source_box_csv(raw, path, label=3, max_boxes=4):
    """Boxes drawn on the original NIfTI slices: case (file stem), slice_index, source pixels."""
    rows = []
    for gt in sorted(raw.glob("training/*/*_frame01_gt.nii.gz"))[:2]:
        volume = np.asanyarray(nib.load(gt).dataobj)  # NIfTI (i, j, k): a slice's column is i, its row is j
        for z in range(volume.shape[2]):
            for x0, y0, x1, y1 in boxes_from_mask(volume[:, :, z].T == label):
                rows.append((gt.name.replace("_gt.nii.gz", ""), z, x0, y0, x1, y1, label))
    table = pd.DataFrame(rows, columns=["case", "slice_index", "x_min", "y_min", "x_max", "y_max", "label"])
    table.iloc[:max_boxes].to_csv(path, index=False)
    return path


def test_every_verb_on_a_synthetic_download(raw_acdc, tiny_checkpoint, tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    backbone = tiny_backbone_args(tiny_checkpoint)
    assert main(["preprocess", "acdc", str(raw_acdc), str(data)]) == 0
    assert main(["embed", str(data), *backbone]) == 0
    boxes = source_box_csv(raw_acdc, tmp_path / "source_boxes.csv")
    assert main(["train", str(data), "--out", str(run), "--boxes", str(boxes), "--epochs", "1", *backbone,
                 "--set", NO_COLLAPSE_CHECK, "--set", BOX_SUPERVISION]) == 0
    trained = pd.read_csv(run / "train_boxes.csv")
    assert trained.slice_id.nunique() >= 1
    # boxes drawn on the originals land on the tight boxes of the preprocessed masks (1 mm resampling: +-2 px)
    from medprompt.data.dataset import PreprocessedDataset

    dataset = PreprocessedDataset(data)
    for row in trained.itertuples():
        mask = dataset.masks([dataset.index_of[row.slice_id]])[0] == 3
        expected = min(boxes_from_mask(mask), key=lambda b: np.abs(b - [row.x_min, row.y_min, row.x_max, row.y_max]).sum())
        assert np.abs(expected - [row.x_min, row.y_min, row.x_max, row.y_max]).max() <= 2

    # raw volume in, NIfTI in the same geometry out
    volume_path = sorted(raw_acdc.glob("training/*/*_frame01.nii.gz"))[0]
    assert main(["predict", str(run), str(volume_path), "--out", str(tmp_path / "raw_pred")]) == 0
    outputs = list((tmp_path / "raw_pred").glob("*.nii.gz"))
    assert len(outputs) == 1
    source, predicted = nib.load(volume_path), nib.load(outputs[0])
    assert predicted.shape == source.shape
    np.testing.assert_array_equal(predicted.affine, source.affine)
    assert predicted.header.get_zooms() == source.header.get_zooms()

    # an image unlike the training volumes (a 2D echo frame), or too small to hold a structure: predicted, with a warning
    echo, tiny = tmp_path / "echo.mhd", tmp_path / "tiny.nii.gz"
    frame = sitk.GetImageFromArray(np.random.default_rng(0).integers(0, 255, (120, 160), dtype=np.uint8))
    frame.SetSpacing((0.3, 0.3))
    sitk.WriteImage(frame, str(echo))
    nib.save(nib.Nifti1Image(np.random.default_rng(1).random((8, 8, 2), np.float32) * 100, np.eye(4)), tiny)
    capsys.readouterr()
    assert main(["predict", str(run), str(echo), str(tiny), "--out", str(tmp_path / "unlike")]) == 0
    err = capsys.readouterr().err
    assert f"medprompt predict: warning: {echo}: a 2D .mhd file, but the run was trained on 3D .nii.gz files (acdc)" in err
    assert f"medprompt predict: warning: {tiny}: slices of 8x8 pixels; too small to hold a structure" in err
    assert sorted(p.name for p in (tmp_path / "unlike").iterdir() if not p.name.startswith(".")) == [
        "echo.mhd", "echo.raw", "predict_outputs.txt", "quality.csv", "tiny.nii.gz"]

    # a bad file among the inputs is refused before anything is written
    blank = tmp_path / "blank.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((30, 30, 3), np.float32), np.eye(4)), blank)
    assert main(["predict", str(run), str(volume_path), str(blank), "--out", str(tmp_path / "two")]) == 2
    assert not (tmp_path / "two").exists()

    # dataset in: predictions.h5 + one volume per case, then 3D scores in mm against the raw labels
    pred = tmp_path / "pred"
    capsys.readouterr()
    assert main(["predict", str(run), str(data), "--out", str(pred)]) == 0
    assert len(list(pred.glob("*.nii.gz"))) == 4
    quality = pd.read_csv(pred / "quality.csv", dtype={"case": str}, keep_default_na=False)
    assert sorted(quality.case) == sorted(p.name.removesuffix(".nii.gz") for p in pred.glob("*.nii.gz"))
    flagged = (quality.review != "").sum()
    line = f"{flagged} of 4 cases to review" if flagged else "no case flagged for review among 4"
    assert f"{pred}: {line} (quality.csv)" in capsys.readouterr().out
    assert main(["evaluate", str(pred), str(raw_acdc), "--out", str(tmp_path / "m3d.csv")]) == 0
    table = pd.read_csv(tmp_path / "m3d.csv")
    assert {"case", "structure", "dice", "hd95_mm", "assd_mm"} <= set(table.columns)
    assert table.case.nunique() == 4

    # the dataset's own masks round-trip through reconstruct
    assert main(["reconstruct", str(data), f"{data / 'slices.h5'}:mask", "--out", str(tmp_path / "rt")]) == 0
    assert main(["evaluate", str(tmp_path / "rt"), str(raw_acdc), "--out", str(tmp_path / "rt.csv")]) == 0
    assert pd.read_csv(tmp_path / "rt.csv").dice.min() >= 0.99

    # an interrupted predict into that folder leaves it refused by evaluate; a complete one scores only its own files
    import medprompt.inference.segment as prediction

    original = prediction.reconstruct
    try:
        prediction.reconstruct = lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt)
        assert main(["predict", str(run), str(data), "--out", str(pred), "--split", "train"]) == 130
    finally:
        prediction.reconstruct = original
    assert main(["evaluate", str(pred), str(raw_acdc), "--out", str(tmp_path / "again.csv")]) == 2
    assert not (tmp_path / "again.csv").exists()
    assert main(["predict", str(run), str(data), "--out", str(pred), "--split", "val"]) == 0
    assert len(list(pred.glob("*.nii.gz"))) == 4  # the earlier volumes are still there ...
    assert main(["evaluate", str(pred), str(raw_acdc), "--out", str(tmp_path / "val.csv")]) == 0
    val_cases = set(PreprocessedDataset(data).manifest.query("split == 'val'").case)
    assert set(pd.read_csv(tmp_path / "val.csv").case) == val_cases  # ... but only this predict's are scored
