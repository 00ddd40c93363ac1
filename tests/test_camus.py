"""CAMUS pipeline: .mhd and NIfTI release layouts -> preprocessed dataset -> files back in the input's format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from helpers import SHARED_DATA, dice
from medprompt.common.config import load_config
from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import PreprocessedDataset
from medprompt.inference.reconstruct import reconstruct_dataset
from preprocessing import camus
from preprocessing.phantoms import write_camus
from preprocessing.pipeline import preprocess, preprocess_input


def assert_round_trip(rec_dir: Path, manifest, suffix: str, min_dice: float) -> float:
    """Reconstructed files have the source label's size, spacing, origin, direction, and Dice >= min_dice."""
    worst = 1.0
    for case, rows in manifest.groupby("case"):
        truth = sitk.ReadImage(rows.source_label.iloc[0])
        rebuilt = sitk.ReadImage(str(rec_dir / f"{case}{suffix}"))
        assert rebuilt.GetSize() == truth.GetSize()
        assert np.allclose(rebuilt.GetSpacing(), truth.GetSpacing(), rtol=1e-6, atol=0)
        assert rebuilt.GetOrigin() == truth.GetOrigin() and rebuilt.GetDirection() == truth.GetDirection()
        assert rebuilt.GetPixelID() == sitk.sitkUInt8
        a, b = sitk.GetArrayFromImage(rebuilt), sitk.GetArrayFromImage(truth)
        for value in (1, 2, 3):
            worst = min(worst, dice(a == value, b == value))
    assert worst >= min_dice
    return worst


@pytest.fixture(scope="module")
def phantom_raw(tmp_path_factory) -> Path:
    return write_camus(tmp_path_factory.mktemp("camus_raw"), n_patients=3, seed=0)


def test_phantom_mhd_round_trip(phantom_raw, tmp_path):
    config = load_config("camus", overrides=["views=[2CH,4CH]", "target=LA"])
    summary = preprocess("camus", phantom_raw, tmp_path / "data", config)
    ds = PreprocessedDataset(tmp_path / "data")
    assert summary["cases"] == 6 and ds.shape[1:] == (512, 512) and ds.target_label == 3
    assert sorted(ds.manifest.case)[:2] == ["patient0001_2CH_ED", "patient0001_4CH_ED"]
    assert (ds.manifest.groupby("patient").split.nunique() == 1).all()
    assert summary["cases_per_split"] == {"train": 2, "val": 2, "test": 2}
    assert (ds.manifest.res_spacing_y == 0.308).all() and (ds.manifest.res_spacing_x == 0.308).all()
    written = reconstruct_dataset(tmp_path / "data", str(tmp_path / "data" / "slices.h5") + ":mask", tmp_path / "rec")
    assert {p.suffix for p in written} == {".mhd"} and all(p.with_suffix(".raw").is_file() for p in written)
    assert_round_trip(tmp_path / "rec", ds.manifest, ".mhd", min_dice=0.99)


def test_nifti_release_layout_comes_back_as_nifti(phantom_raw, tmp_path):
    folder = tmp_path / "raw" / "patient0001"
    folder.mkdir(parents=True)
    for name in ("patient0001_2CH_ED", "patient0001_2CH_ED_gt"):
        image = sitk.ReadImage(str(phantom_raw / "training" / "patient0001" / f"{name}.mhd"))
        sitk.WriteImage(image[:, :, 0], str(folder / f"{name}.nii.gz"))
    preprocess("camus", tmp_path / "raw", tmp_path / "data", load_config("camus"))
    written = reconstruct_dataset(tmp_path / "data", str(tmp_path / "data" / "slices.h5"), tmp_path / "rec")
    assert [p.name for p in written] == ["patient0001_2CH_ED.nii.gz"]
    assert_round_trip(tmp_path / "rec", PreprocessedDataset(tmp_path / "data").manifest, ".nii.gz", min_dice=0.99)


def test_preprocess_input_of_an_mhd(phantom_raw):
    path = phantom_raw / "training" / "patient0002" / "patient0002_2CH_ED.mhd"
    manifest, images = preprocess_input(path, load_config("camus"))
    assert images.shape == (1, 512, 512) and images.dtype == np.uint8
    assert manifest.case.iloc[0] == "patient0002_2CH_ED" and manifest.frame.iloc[0] == "ED"
    assert images.max() == 255 and images.min() == 0


def test_truncated_raw_and_missing_view_are_reported(phantom_raw, tmp_path):
    raw = tmp_path / "raw"
    for patient in ("patient0001", "patient0002"):
        (raw / patient).mkdir(parents=True)
        for name in (f"{patient}_2CH_ED", f"{patient}_2CH_ED_gt"):
            for suffix in (".mhd", ".raw"):
                src = phantom_raw / "training" / patient / f"{name}{suffix}"
                (raw / patient / src.name).write_bytes(src.read_bytes())
    bad = raw / "patient0002" / "patient0002_2CH_ED.raw"
    bad.write_bytes(bad.read_bytes()[:1000])
    (raw / "patient0003").mkdir()
    summary = preprocess("camus", raw, tmp_path / "data", load_config("camus"))
    assert summary["cases"] == 1
    assert any("patient0002_2CH_ED.mhd" in s and "truncated" in s for s in summary["skipped"])
    assert any("patient0003_2CH_ED" in s and "missing" in s for s in summary["skipped"])
    case = next(c for c in camus.find_cases(raw, load_config("camus"))[0] if c.patient == "patient0002")
    with pytest.raises(MedpromptError, match="patient0002_2CH_ED.mhd: truncated"):
        camus.load_case(case, load_config("camus"))


def test_unknown_view_is_refused(phantom_raw, tmp_path):
    with pytest.raises(MedpromptError, match=r"config key views: \['3CH'\] is not allowed; it takes a list of words"):
        preprocess("camus", phantom_raw, tmp_path / "out", load_config("camus", overrides=["views=[3CH]"]))
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not (SHARED_DATA / "CAMUS").is_dir(), reason="real CAMUS samples not available")
def test_real_camus_round_trip(tmp_path):
    config = load_config("camus", overrides=["views=[2CH,4CH]"])
    summary = preprocess("camus", SHARED_DATA / "CAMUS", tmp_path / "data", config)
    assert not summary["skipped"] and not summary["target_cropped"]
    reconstruct_dataset(tmp_path / "data", str(tmp_path / "data" / "slices.h5"), tmp_path / "rec")
    assert_round_trip(tmp_path / "rec", PreprocessedDataset(tmp_path / "data").manifest, ".mhd", min_dice=0.99)
