"""Volume-level consistency: a stray blob on a slice apart from the structure does not survive prediction."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from medprompt.cli.main import main
from medprompt.data.dataset import PreprocessedDataset
from medprompt.inference import segment
from medprompt.inference.consistency import consistent_masks, largest_component
from medprompt.inference.store import read_predictions


def test_a_blob_on_a_slice_apart_from_the_structure_is_dropped():
    volume = np.zeros((6, 10, 10), dtype=bool)
    volume[1:4, 3:7, 3:7] = True      # the structure, on slices 1-3
    volume[2, 8:10, 0:2] = True       # an island beside it on one of its slices
    volume[5, 4:6, 4:6] = True        # a blob on slice 5, one empty slice away from the structure
    kept = largest_component(volume)
    expected = np.zeros_like(volume)
    expected[1:4, 3:7, 3:7] = True
    np.testing.assert_array_equal(kept, expected)


def test_slices_that_touch_diagonally_stay_one_structure():
    volume = np.zeros((3, 8, 8), dtype=bool)
    volume[0, 2:4, 2:4] = True
    volume[1, 4:6, 4:6] = True        # shares only a corner with slice 0's square
    volume[2, 0, 7] = True
    kept = largest_component(volume)
    assert kept[0].sum() == 4 and kept[1].sum() == 4 and not kept[2].any()


def test_an_empty_volume_and_a_single_slice():
    assert not largest_component(np.zeros((2, 4, 4), dtype=bool)).any()
    image = np.zeros((1, 8, 8), dtype=bool)
    image[0, :3, :3] = True
    image[0, 6:, 6:] = True
    assert largest_component(image).sum() == 9


def test_cases_are_stacked_by_slice_index_not_by_row_order():
    masks = np.zeros((4, 6, 6), dtype=np.uint8)
    masks[0, 1:3, 1:3] = 3   # case a, slice 2
    masks[1, 1:3, 1:3] = 3   # case a, slice 0: not adjacent to slice 2, the smaller of two pieces after slice 1
    masks[2, 1:4, 1:4] = 3   # case a, slice 1: joins slices 0 and 2 into one structure
    masks[3, 0, 0] = 3       # case b, its only slice
    manifest = pd.DataFrame({"case": ["a", "a", "a", "b"], "slice_index": [2, 0, 1, 0]})
    np.testing.assert_array_equal(consistent_masks(manifest, masks), masks)
    manifest.loc[2, "case"] = "c"  # without slice 1, case a's slices 0 and 2 are apart: the first largest stays
    kept = consistent_masks(manifest, masks)
    assert kept[0].any() != kept[1].any() and kept[2].any() and kept[3].any()


@pytest.mark.parametrize("keep", [True, False])
def test_a_stray_blob_on_an_empty_slice_does_not_survive_predict(acdc_run, tmp_path, monkeypatch, keep):
    run = tmp_path / "run"
    shutil.copytree(acdc_run.run, run)
    dataset = PreprocessedDataset(acdc_run.dataset)
    manifest = dataset.manifest
    empty = int(np.flatnonzero(~manifest.has_target.to_numpy())[0])
    case = manifest.case[empty]

    def perfect_with_a_blob(method, data, rows, *args, **kwargs):
        probs = (data.masks(rows) == dataset.target_label).astype(np.float32)
        probs[list(rows).index(empty), :6, :6] = 1.0
        return segment.Segmented(probs, np.full(len(rows), np.nan, np.float32))

    monkeypatch.setattr(segment, "segment_dataset", perfect_with_a_blob)
    out = tmp_path / "pred"
    flag = [] if keep else ["--no-largest-component"]  # on by default (refine.largest_component)
    assert main(["predict", str(run), str(acdc_run.dataset), "--out", str(out), *flag]) == 0
    predicted_manifest, masks, label = read_predictions(out)
    row = int(np.flatnonzero(predicted_manifest.slice_id.to_numpy() == manifest.slice_id[empty])[0])
    assert bool(masks[row].any()) is not keep
    truth = (dataset.masks(dataset.rows()) == dataset.target_label)
    assert bool(((masks > 0) == truth).all()) is keep
    volume = np.asarray(nib.load(next(out.glob(f"{case}*.nii.gz"))).dataobj)  # ACDC: slices on the last axis
    assert bool((volume[..., int(manifest.slice_index[empty])] == label).any()) is not keep


def test_a_share_keeps_the_other_large_pieces_of_a_split_structure():
    volume = np.zeros((5, 10, 10), dtype=bool)
    volume[0:3, 0:4, 0:4] = True      # 48 voxels
    volume[3:5, 6:10, 6:10] = True    # 32 voxels: the structure cut where a slice's mask split
    volume[4, 0, 9] = True            # 1 voxel
    assert largest_component(volume).sum() == 48
    assert largest_component(volume, share=0.5).sum() == 80
    assert largest_component(volume, share=0.7).sum() == 48
    assert largest_component(volume, share=0.0).sum() == 81
