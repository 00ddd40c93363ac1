"""ACDC pipeline: raw layout -> preprocessed dataset -> reconstructed NIfTI in the source geometry; bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from helpers import SHARED_DATA, dice
from medprompt.common.config import load_config
from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import REQUIRED_COLUMNS, PreprocessedDataset
from medprompt.inference.reconstruct import reconstruct_dataset
from preprocessing import acdc
from preprocessing.phantoms import write_acdc
from preprocessing.pipeline import format_summary, preprocess, preprocess_input

ACDC_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])


def assert_round_trip(out_dir: Path, raw_dir: Path, manifest: pd.DataFrame, min_dice: float) -> float:
    """Every reconstructed case has its source label's shape, affine and zooms, and Dice >= min_dice per structure."""
    worst = 1.0
    for case, rows in manifest.groupby("case"):
        truth = nib.load(rows.source_label.iloc[0])
        rebuilt = nib.load(out_dir / f"{case}.nii.gz")
        assert rebuilt.shape == truth.shape
        np.testing.assert_array_equal(rebuilt.affine, truth.affine)
        assert rebuilt.header.get_zooms() == truth.header.get_zooms()
        assert (rebuilt.header["qform_code"], rebuilt.header["sform_code"]) == (truth.header["qform_code"], truth.header["sform_code"])
        assert rebuilt.get_data_dtype() == np.uint8
        a, b = np.asanyarray(rebuilt.dataobj), np.asanyarray(truth.dataobj)
        for value in (1, 2, 3):
            worst = min(worst, dice(a == value, b == value))
    assert worst >= min_dice
    return worst


@pytest.fixture(scope="module")
def phantom_raw(tmp_path_factory) -> Path:
    return write_acdc(tmp_path_factory.mktemp("acdc_raw"), n_patients=3, seed=0)


@pytest.fixture(scope="module")
def phantom_dataset(phantom_raw, tmp_path_factory) -> tuple[Path, dict]:
    config = load_config("acdc", overrides=["frames=[ED,ES]"])
    out = tmp_path_factory.mktemp("acdc_pre") / "data"
    summary = preprocess("acdc", phantom_raw, out, config)
    return out, summary


def test_phantom_dataset_follows_the_contract(phantom_dataset):
    out, summary = phantom_dataset
    ds = PreprocessedDataset(out)
    m = ds.manifest
    assert set(REQUIRED_COLUMNS) <= set(m.columns)
    assert {"target_area", "source_image", "source_label"} <= set(m.columns)
    assert ds.shape[1:] == (256, 256) and ds.has_masks
    assert ds.attrs["dataset"] == "acdc" and ds.target_label == 3
    assert ds.attrs["config"]["geometry"]["target_spacing"] == [1.0, 1.0]
    assert {int(k): v for k, v in ds.attrs["labels"].items()} == {1: "RV", 2: "myocardium", 3: "LV"}
    assert sorted(m.case.unique()) == [f"patient00{i}_{f}" for i in (1, 2, 3) for f in ("ED", "ES")]
    assert (m.groupby("patient").split.nunique() == 1).all()
    masks = ds.masks(np.arange(len(ds)))
    np.testing.assert_array_equal(m.target_area.to_numpy(), (masks == 3).sum(axis=(1, 2)))
    np.testing.assert_array_equal(m.has_target.to_numpy(), (masks == 3).any(axis=(1, 2)))
    assert summary["cases"] == 6 and not summary["skipped"]
    assert "6 cases from 3 patients" in format_summary(summary)


def test_splits_without_a_testing_folder_are_drawn_and_a_testing_folder_is_the_test_split(phantom_raw, tmp_path):
    config = load_config("acdc")
    summary = preprocess("acdc", phantom_raw, tmp_path / "drawn", config)
    assert summary["patients_per_split"] == {"train": 1, "val": 1, "test": 1}
    assert "train, val, test: drawn by patient in proportion train 90, val 10, test 50 (splits.seed 0)" in format_summary(summary)
    raw = tmp_path / "raw"
    shutil.copytree(phantom_raw, raw)
    (raw / "testing").mkdir()
    shutil.move(raw / "training" / "patient003", raw / "testing" / "patient003")
    summary = preprocess("acdc", raw, tmp_path / "official", config)
    manifest = PreprocessedDataset(tmp_path / "official").manifest
    assert set(manifest.patient[manifest.split == "test"]) == {"patient003"}
    assert summary["patients_per_split"] == {"train": 1, "val": 1, "test": 1}
    text = format_summary(summary)
    assert "test: the raw layout's own split" in text
    assert "train, val: drawn by patient in proportion train 90, val 10 (splits.seed 0)" in text


def test_an_existing_dataset_is_replaced_only_on_request_and_a_wrong_target_is_named(phantom_raw, phantom_dataset):
    out, _ = phantom_dataset
    before = (out / "manifest.csv").read_bytes()
    with pytest.raises(MedpromptError, match="already holds a preprocessed dataset .*--overwrite"):
        preprocess("acdc", phantom_raw, out, load_config("acdc", overrides=["frames=[ED,ES]"]))
    with pytest.raises(MedpromptError, match=r"target 'foo' is not one of acdc labels: RV \(1\), myocardium \(2\), LV"):
        preprocess("acdc", phantom_raw, out, load_config("acdc", overrides=["target=foo"]), overwrite=True)
    assert (out / "manifest.csv").read_bytes() == before


def test_phantom_masks_round_trip_to_source_geometry(phantom_raw, phantom_dataset, tmp_path):
    out, _ = phantom_dataset
    written = reconstruct_dataset(out, f"{out / 'slices.h5'}:mask", tmp_path)
    assert len(written) == 6
    assert_round_trip(tmp_path, phantom_raw, PreprocessedDataset(out).manifest, min_dice=0.99)


def test_preprocess_input_matches_the_dataset_pipeline(phantom_raw, phantom_dataset):
    out, _ = phantom_dataset
    ds = PreprocessedDataset(out)
    rows = ds.manifest[ds.manifest.case == "patient002_ED"]
    manifest, images = preprocess_input(rows.source_image.iloc[0], ds.attrs["config"])
    np.testing.assert_array_equal(images, ds.images(rows.index.to_numpy()))
    assert (manifest.split == "test").all() and not manifest.has_target.any()
    assert manifest.case.iloc[0] == "patient002_frame01"
    geometry = ["res_height", "res_width", "offset_y", "offset_x", "volume_shape", "nifti_header"]
    assert manifest[geometry].astype(str).values.tolist() == rows[geometry].astype(str).values.tolist()


# ---------------------------------------------------------------- bad input


def write_patient(root: Path, name: str, image: np.ndarray, label: np.ndarray | None, info: bool = True) -> Path:
    """A tiny ACDC patient folder with the release's header conventions (ED = frame 1)."""
    folder = root / "training" / name
    folder.mkdir(parents=True)
    if info:
        (folder / "Info.cfg").write_text("ED: 1\nES: 2\nGroup: NOR\n")
    for data, suffix in ((image, ""), (label, "_gt")):
        if data is not None:
            img = nib.Nifti1Image(data, ACDC_AFFINE)
            img.header.set_sform(ACDC_AFFINE, code=2)
            img.header.set_zooms((1.5, 1.5, 10.0))
            nib.save(img, folder / f"{name}_frame01{suffix}.nii.gz")
    return folder


def good_pair(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = np.zeros((40, 48, 3), dtype=np.uint8)
    label[10:30, 12:36, :] = 2
    label[15:25, 18:30, :] = 3
    label[10:30, 4:10, :] = 1
    image = (rng.normal(100, 20, label.shape) + 50 * label).astype(np.int16)
    return image, label


def run(root: Path, tmp_path: Path) -> dict:
    return preprocess("acdc", root, tmp_path / "out", load_config("acdc"))


def test_missing_info_cfg_skips_that_patient_and_names_the_file(tmp_path):
    write_patient(tmp_path / "raw", "patient001", *good_pair())
    write_patient(tmp_path / "raw", "patient002", *good_pair(1), info=False)
    summary = run(tmp_path / "raw", tmp_path)
    assert summary["cases"] == 1
    assert any("patient002/Info.cfg" in s and "missing" in s for s in summary["skipped"])
    assert "skipped 1" in format_summary(summary)


def test_only_unreadable_patients_is_an_error_naming_the_file(tmp_path):
    write_patient(tmp_path / "raw", "patient001", *good_pair(), info=False)
    with pytest.raises(MedpromptError, match="patient001/Info.cfg"):
        run(tmp_path / "raw", tmp_path)


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "raw").mkdir()
    with pytest.raises(MedpromptError, match="no acdc cases found"):
        run(tmp_path / "raw", tmp_path)
    with pytest.raises(MedpromptError, match="not found"):
        run(tmp_path / "missing", tmp_path)


@pytest.mark.parametrize("problem", ["truncated", "shape", "values", "nan"])
def test_bad_case_is_reported_with_its_file_and_others_continue(tmp_path, problem):
    image, label = good_pair()
    write_patient(tmp_path / "raw", "patient001", image, label)
    if problem == "shape":
        label = label[:, :40]
    elif problem == "values":
        label = label.copy()
        label[0, 0, 0] = 7
    elif problem == "nan":
        image = image.astype(np.float32)
        image[5, 5, 1] = np.nan
    folder = write_patient(tmp_path / "raw", "patient002", image, label)
    bad = folder / ("patient002_frame01_gt.nii.gz" if problem in ("shape", "values") else "patient002_frame01.nii.gz")
    if problem == "truncated":
        bad.write_bytes(bad.read_bytes()[:200])
    expected = {"truncated": "truncated", "shape": "shape", "values": r"unexpected label values \[7\]", "nan": "NaN"}[problem]
    raw_case = acdc.find_cases(tmp_path / "raw", load_config("acdc"))[0][1]
    with pytest.raises(MedpromptError, match=expected) as error:
        acdc.load_case(raw_case, load_config("acdc"))
    assert str(bad) in str(error.value) and "\n" not in str(error.value)
    summary = run(tmp_path / "raw", tmp_path)
    assert summary["cases"] == 1 and str(bad) in summary["skipped"][0]
    assert not list((tmp_path / "out").glob("*.partial"))


def test_float32_images_testing_folder_and_missing_labels(tmp_path):
    image, label = good_pair()
    write_patient(tmp_path / "raw", "patient001", image.astype(np.float32), label)
    write_patient(tmp_path / "raw", "patient002", image, label)
    write_patient(tmp_path / "raw", "patient003", image, None)
    (tmp_path / "raw" / "testing").mkdir()
    for name in ("patient002", "patient003"):
        shutil.move(tmp_path / "raw" / "training" / name, tmp_path / "raw" / "testing" / name)
    summary = run(tmp_path / "raw", tmp_path)
    assert summary["cases_per_split"] == {"train": 1, "val": 0, "test": 2}
    assert summary["unlabelled_cases"] == 1 and "1 cases have no label file" in format_summary(summary)
    ds = PreprocessedDataset(tmp_path / "out")
    unlabelled = ds.manifest.case == "patient003_ED"
    assert not ds.manifest.has_label[unlabelled].any() and ds.manifest.has_label[~unlabelled].all()
    assert ds.masks(np.flatnonzero(unlabelled)).max() == 0


# ---------------------------------------------------------------- real samples


@pytest.mark.skipif(not (SHARED_DATA / "ACDC").is_dir(), reason="real ACDC samples not available")
def test_real_acdc_round_trip(tmp_path):
    raw = SHARED_DATA / "ACDC"
    summary = preprocess("acdc", raw, tmp_path / "data", load_config("acdc"))
    assert summary["cases"] == len(list(raw.rglob("Info.cfg"))) and not summary["skipped"]
    reconstruct_dataset(tmp_path / "data", str(tmp_path / "data" / "slices.h5"), tmp_path / "rec")
    assert_round_trip(tmp_path / "rec", raw, PreprocessedDataset(tmp_path / "data").manifest, min_dice=0.999)
