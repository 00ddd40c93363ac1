"""Boxes drawn on original images mapped through the preprocessing geometry into slice pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from medprompt.common.config import load_config
from medprompt.common.errors import MedpromptError
from medprompt.data.boxes import boxes_from_mask, map_source_boxes
from medprompt.data.dataset import PreprocessedDataset
from medprompt.data.volume_io import read_volume
from preprocessing.phantoms import write_acdc, write_hc18
from preprocessing.pipeline import preprocess, preprocess_input


@pytest.fixture(scope="module")
def acdc_dataset(tmp_path_factory) -> PreprocessedDataset:
    root = tmp_path_factory.mktemp("boxes")
    write_acdc(root / "raw", n_patients=2, seed=4)
    preprocess("acdc", root / "raw", root / "data", load_config("acdc"))
    return PreprocessedDataset(root / "data")


def source_box_table(dataset: PreprocessedDataset, label: int, case_column: str = "case") -> pd.DataFrame:
    """Tight boxes of `label` on every source slice, in source pixels, one row per slice with one component."""
    rows = []
    for _, group in dataset.manifest.groupby("case"):
        labels, _ = read_volume(group.source_label.iloc[0])
        for _, row in group.iterrows():
            boxes = boxes_from_mask(labels[row.slice_index] == label)
            if len(boxes) == 1:
                name = row.case if case_column == "case" else Path(row.source_image).name.split(".")[0]
                rows.append((name, row.slice_index, *boxes[0], label))
    return pd.DataFrame(rows, columns=["case", "slice_index", "x_min", "y_min", "x_max", "y_max", "label"])


def test_resampled_boxes_match_boxes_of_the_preprocessed_masks(acdc_dataset, tmp_path):
    table = source_box_table(acdc_dataset, 3, case_column="file")
    table.to_csv(tmp_path / "boxes.csv", index=False)
    mapped = map_source_boxes(tmp_path / "boxes.csv", acdc_dataset.manifest)
    assert list(mapped.columns) == ["slice_id", "x_min", "y_min", "x_max", "y_max"] and len(mapped) == len(table) > 5
    for row in mapped.itertuples():
        mask = acdc_dataset.masks([acdc_dataset.index_of[row.slice_id]])[0] == 3
        [expected] = boxes_from_mask(mask)
        assert np.abs(np.array([row.x_min, row.y_min, row.x_max, row.y_max]) - expected).max() <= 1


def test_unresampled_boxes_shift_exactly(tmp_path):
    write_hc18(tmp_path / "raw", n_images=3, seed=1)
    preprocess("hc18", tmp_path / "raw", tmp_path / "data", load_config("hc18"))
    dataset = PreprocessedDataset(tmp_path / "data")
    table = source_box_table(dataset, 1)
    table.to_csv(tmp_path / "boxes.csv", index=False)
    mapped = map_source_boxes(tmp_path / "boxes.csv", dataset.manifest)
    for row, source in zip(mapped.itertuples(), table.itertuples()):
        geometry = dataset.manifest.set_index("slice_id").loc[row.slice_id]
        expected = np.clip([source.x_min + geometry.offset_x, source.y_min + geometry.offset_y,
                            source.x_max + geometry.offset_x, source.y_max + geometry.offset_y], 0, 639)
        np.testing.assert_array_equal([row.x_min, row.y_min, row.x_max, row.y_max], expected)


def write_csv(path: Path, rows: list[tuple]) -> Path:
    pd.DataFrame(rows, columns=["case", "slice_index", "x_min", "y_min", "x_max", "y_max", "label"]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "row, message",
    [
        (("patient001_ED", 0, -1, 10, 20, 30, 3), "row 3: box .* is outside the"),
        (("patient001_ED", 0, 10, 10, 9000, 30, 3), "row 3: box .* is outside the"),
        (("patient001_ED", 0, 30, 10, 20, 30, 3), "x_min > x_max"),
        (("patient404_ED", 0, 10, 10, 20, 30, 3), "row 3: case 'patient404_ED' slice 0 is not in the manifest"),
        (("patient001_ED", 99, 10, 10, 20, 30, 3), "slice 99 is not in the manifest"),
    ],
)
def test_bad_boxes_name_the_file_and_row(acdc_dataset, tmp_path, row, message):
    path = write_csv(tmp_path / "mine.csv", [("patient001_ED", 0, 100, 100, 120, 130, 3), row])
    with pytest.raises(MedpromptError, match=message) as error:
        map_source_boxes(path, acdc_dataset.manifest)
    assert str(path) in str(error.value)


def test_box_in_the_cropped_margin_and_malformed_files(tmp_path):
    image = np.full((60, 800), 128, np.uint8)
    image[30, 400] = 129  # not blank
    cv2.imwrite(str(tmp_path / "010_HC.png"), image)
    manifest, _ = preprocess_input(tmp_path / "010_HC.png", load_config("hc18"))
    with pytest.raises(MedpromptError, match="b.csv: row 2: box of '010_HC' lies in the part of the image cropped away"):
        map_source_boxes(write_csv(tmp_path / "b.csv", [("010_HC", 0, 0, 10, 5, 20, 1)]), manifest)
    [kept] = map_source_boxes(write_csv(tmp_path / "k.csv", [("010_HC", 0, 70, 10, 100, 20, 1)]), manifest).itertuples()
    assert (kept.x_min, kept.y_min, kept.x_max, kept.y_max) == (0, 300, 20, 310)
    (tmp_path / "c.csv").write_text("case,x_min\n010_HC,1\n")
    with pytest.raises(MedpromptError, match=r"c.csv: missing columns \['slice_index'"):
        map_source_boxes(tmp_path / "c.csv", manifest)
    (tmp_path / "d.csv").write_text("case,slice_index,x_min,y_min,x_max,y_max\n010_HC,0,a,1,2,3\n")
    with pytest.raises(MedpromptError, match="d.csv: row 2: slice_index and box coordinates must be numbers"):
        map_source_boxes(tmp_path / "d.csv", manifest)
    with pytest.raises(MedpromptError, match="box file not found"):
        map_source_boxes(tmp_path / "none.csv", manifest)
