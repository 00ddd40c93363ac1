"""Overlay pictures: a slice with its ground-truth and predicted outlines, a legend and what is drawn.

Per case, two slices: the one with the largest target (how it usually looks)
and the one where the prediction's Dice is lowest (where it fails).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from medprompt.common.atomic import atomic_path
from medprompt.data.dataset import PreprocessedDataset
from medprompt.evaluation.metrics import dice
from medprompt.inference.store import read_predictions

TRUTH_BGR = (80, 220, 80)
PREDICTION_BGR = (40, 40, 240)
UPPER_BOUND_BGR = (0, 160, 255)
TRUTH, PREDICTION, UPPER_BOUND = "ground truth", "prediction", "box-prompted"
COLOURS = {TRUTH: TRUTH_BGR, UPPER_BOUND: UPPER_BOUND_BGR, PREDICTION: PREDICTION_BGR}
LINE = 18  # pixels per header text line
MIN_WIDTH = 512  # small slices are enlarged to at least this width, so that the header fits


def overlay(image: np.ndarray, contours: list[tuple[np.ndarray, tuple[int, int, int]]], scale: int = 2) -> np.ndarray:
    """A grey uint8 slice as BGR, enlarged `scale` times, with each binary mask's outline in its colour."""
    picture = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_GRAY2BGR)
    picture = cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    for mask, colour in contours:
        big = cv2.resize(mask.astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        outlines, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(picture, outlines, -1, colour, 1)
    return picture


def with_header(picture: np.ndarray, title: str, legend: list[str]) -> np.ndarray:
    """The picture under a black band holding a title line and a colour legend line."""
    band = np.zeros((2 * LINE + 6, picture.shape[1], 3), dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(band, title, (6, LINE - 4), font, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    x = 6
    for name in legend:
        cv2.line(band, (x, 2 * LINE - 2), (x + 16, 2 * LINE - 2), COLOURS[name], 2)
        cv2.putText(band, name, (x + 20, 2 * LINE + 2), font, 0.45, COLOURS[name], 1, cv2.LINE_AA)
        x += 20 + cv2.getTextSize(name, font, 0.45, 1)[0][0] + 14
    return np.vstack([band, picture])


def write_png(picture: np.ndarray, path: str | os.PathLike) -> Path:
    """Write a picture atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        ok, encoded = cv2.imencode(".png", picture)
        if not ok:
            raise OSError(f"{path}: PNG encoding failed")
        tmp.write_bytes(encoded.tobytes())
    return path


def chosen_slices(truth: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    """Positions of a case's slice with the largest target and of its lowest-Dice slice (among those with either)."""
    shown = np.flatnonzero(truth.reshape(len(truth), -1).any(1) | predicted.reshape(len(truth), -1).any(1))
    if len(shown) == 0:
        return {}
    largest = int(np.argmax(truth.reshape(len(truth), -1).sum(1)))
    worst = int(shown[np.argmin([dice(predicted[k], truth[k]) for k in shown])])
    return {"largest": largest, "worst": worst}


def draw_overlays(dataset: PreprocessedDataset, pred_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  bound_dir: str | os.PathLike | None = None) -> list[Path]:
    """`CASE_largest.png` and `CASE_worst.png` per case of a prediction folder of `dataset` (with the box-prompted
    outlines of `bound_dir` when given); the title names the slice and its Dice."""
    manifest, predicted, label = read_predictions(Path(pred_dir))
    bounded = read_predictions(Path(bound_dir))[1] == label if bound_dir is not None else None
    legend = [TRUTH, PREDICTION] + ([UPPER_BOUND] if bounded is not None else [])
    written = []
    for case, positions in manifest.groupby("case", sort=False).indices.items():
        rows = np.array([dataset.index_of[s] for s in manifest.slice_id.iloc[positions]])
        truth, ours = dataset.masks(rows) == label, predicted[positions] == label
        images = dataset.images(rows)
        scale = -(-MIN_WIDTH // images.shape[2])
        for kind, k in chosen_slices(truth, ours).items():
            outlines = [(truth[k], TRUTH_BGR), (ours[k], PREDICTION_BGR)]
            title = f"{case}  slice {manifest.slice_index.iloc[positions[k]]} ({kind})  Dice {dice(ours[k], truth[k]):.3f}"
            if bounded is not None:
                outlines.insert(1, (bounded[positions[k]], UPPER_BOUND_BGR))
                title += f", box-prompted {dice(bounded[positions[k]], truth[k]):.3f}"
            picture = with_header(overlay(images[k], outlines, scale), title, legend)
            written.append(write_png(picture, Path(out_dir) / f"{case}_{kind}.png"))
    return written
