"""Automatic segmentation: encoder -> method (prompts, mask decoder) (-> box-prompted second pass) -> mask.

No box and no label is needed. The box-prompted path (MedSAM given the tight
ground-truth boxes, the `box_prompted` method) is here too: it is the upper
bound the paper compares with.
The first pass can be averaged over the slice's flips and turns (`orientations`),
each encoded again. `predict_dataset` segments a preprocessed dataset into
`predictions.h5` and, when the manifest records the source geometry, volumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from medprompt.common.device import autocast
from medprompt.common.distributed import Group
from medprompt.common.errors import MedpromptError
from medprompt.data.boxes import Boxes, boxes_from_dataset
from medprompt.data.dataset import PreprocessedDataset
from medprompt.inference.consistency import consistent_masks
from medprompt.inference.quality import quality_table, slice_signals, write_quality
from medprompt.inference.reconstruct import check_reconstructable, reconstruct
from medprompt.inference.store import has_source_geometry, prediction_folder, write_predictions
from medprompt.methods import Method, Slices
from medprompt.methods.box_prompted import BoxPrompted
from medprompt.methods.orientations import ORIENTATION_SETS, check_orientations, orient_array, unorient_tensor
from medprompt.methods.refinement import RefineConfig, refine
from medprompt.methods.run_dir import TrainedModel
from medprompt.methods.slice_inputs import dataset_batches, image_slices, reads_for


class Segmented(NamedTuple):
    """Slices' foreground probabilities [N,H,W] float32, and the mask decoder's IoU estimate of each slice's mask
    from a box-prompted pass [N] (NaN where no such pass drew it)."""

    probs: np.ndarray
    decoder_iou: np.ndarray

    @classmethod
    def empty(cls, count: int, size: tuple[int, int]) -> Segmented:
        """Room for `count` slices of `size`: no foreground, no estimate."""
        return cls(np.zeros((count, *size), np.float32), np.full(count, np.nan, np.float32))

    def put(self, index: list[int] | slice, probs: torch.Tensor, decoder_iou: torch.Tensor) -> None:
        """Fill the slices at `index`."""
        self.probs[index] = probs.float().cpu().numpy()
        self.decoder_iou[index] = decoder_iou.float().cpu().numpy()


@torch.no_grad()
def segment_slices(method: Method, slices: Slices, size: tuple[int, int],
                   refine_config: RefineConfig = RefineConfig(), images: np.ndarray | None = None,
                   orientations: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """Foreground probabilities [B,H,W]: the method's first pass (averaged over the slices' `orientations`, which
    needs their grey `images` [B,H,W]), then refined if enabled; and the second pass's IoU estimates [B]."""
    backbone = method.backbone
    with autocast(backbone.device):
        probs = first_pass(method, slices, size)
        chosen = ORIENTATION_SETS[orientations]
        for orientation in chosen:
            turned = orient_array(images, orientation)
            turned_slices = image_slices(backbone, turned, method.reads)
            probs = probs + unorient_tensor(first_pass(method, turned_slices, turned.shape[1:]), orientation)
        return refine(method, slices.embeddings, probs / (1 + len(chosen)), size, refine_config)


def first_pass(method: Method, slices: Slices, size: tuple[int, int]) -> torch.Tensor:
    """Probabilities [B,H,W] of the method's own prediction."""
    return torch.sigmoid(method.backbone.logits_to_image(method(slices), size))[:, 0].float()


@torch.no_grad()
def segment_images(method: Method, images: np.ndarray, batch_size: int = 8, progress: bool = True,
                   refine_config: RefineConfig = RefineConfig(), orientations: str = "none") -> Segmented:
    """Uint8 slices [N,H,W] never seen before (no cache), segmented."""
    if method.needs_boxes:
        raise MedpromptError(f"method {method.name} needs the ground-truth boxes; give a preprocessed dataset with masks")
    reads = reads_for(method.reads, refine_config.enabled)
    out = Segmented.empty(len(images), images.shape[1:])
    for start in tqdm(range(0, len(images), batch_size), desc="predict", unit="batch", disable=not progress):
        batch = images[start : start + batch_size]
        out.put(slice(start, start + len(batch)), *segment_slices(
            method, image_slices(method.backbone, batch, reads), images.shape[1:], refine_config, batch, orientations))
    return out


@torch.no_grad()
def segment_dataset(method: Method, dataset: PreprocessedDataset, rows: np.ndarray, batch_size: int = 8,
                    progress: bool = True, refine_config: RefineConfig = RefineConfig(),
                    orientations: str = "none", desc: str = "predict") -> Segmented:
    """The slices of a preprocessed dataset at `rows`, segmented."""
    size = dataset.shape[1:]
    out = Segmented.empty(len(rows), size)
    position = {r: i for i, r in enumerate(rows)}
    bar = tqdm(total=len(rows), desc=desc, unit="slice", disable=not progress)
    reads = reads_for(method.reads, refine_config.enabled)
    for batch, slices in dataset_batches(dataset, method.backbone, rows, reads, batch_size):
        images = dataset.images(batch) if ORIENTATION_SETS[orientations] else None
        out.put([position[r] for r in batch], *segment_slices(method, slices, size, refine_config, images, orientations))
        bar.update(len(batch))
    bar.close()
    return out


@torch.no_grad()
def box_prompted_dataset(method: Method, dataset: PreprocessedDataset, rows: np.ndarray, boxes: Boxes,
                         batch_size: int = 8, progress: bool = True, desc: str = "box prompts") -> Segmented:
    """The method's decoder prompted with each slice's boxes: the union of their masks, the lowest of their IoU
    estimates."""
    backbone = method.backbone
    size = dataset.shape[1:]
    out = Segmented.empty(len(rows), size)
    ids = dataset.manifest.slice_id.to_numpy()
    position = {r: i for i, r in enumerate(rows)}
    bar = tqdm(total=len(rows), desc=desc, unit="slice", disable=not progress)
    for batch, slices in dataset_batches(dataset, backbone, rows, ("embeddings",), batch_size):
        embeddings = slices.embeddings
        owner, prompt_boxes = [], []
        for j, r in enumerate(batch):
            for box in boxes[ids[r]]:
                owner.append(j)
                prompt_boxes.append(box)
        if prompt_boxes:
            owner_t = torch.tensor(owner, device=backbone.device)
            with autocast(backbone.device):
                logits, iou = method.prompt_with_boxes(embeddings[owner_t], np.array(prompt_boxes), size)
            probs = torch.sigmoid(backbone.logits_to_image(logits, size))[:, 0].float()
            index = owner_t.view(-1, 1, 1).expand_as(probs)
            merged = torch.zeros((len(batch), *size), device=probs.device).scatter_reduce_(0, index, probs, "amax")
            lowest = torch.full((len(batch),), float("nan"), device=iou.device).scatter_reduce_(
                0, owner_t, iou.float(), "amin", include_self=False)
            out.put([position[r] for r in batch], merged, lowest)
        bar.update(len(batch))
    bar.close()
    return out


def label_masks(model: TrainedModel, manifest: pd.DataFrame, foreground: np.ndarray,
                box_prompt: bool = False) -> np.ndarray:
    """Label masks [N,H,W] uint8 of the foreground (probabilities over 0.5) of the manifest's rows; with
    `refine.largest_component` (and not box-prompted) each case keeps its largest 3D connected component (and those
    of `refine.component_share` of its size)."""
    masks = (foreground * int(model.config["dataset"]["target_label"])).astype(np.uint8)
    if model.refine.largest_component and not box_prompt:
        masks = consistent_masks(manifest, masks, model.refine.component_share)
    return masks


def predict_dataset(model: TrainedModel, dataset_dir: Path, out_dir: Path, splits: Sequence[str] | None = None,
                    batch_size: int = 8, box_prompt: bool = False, progress: bool = True,
                    group: Group = Group()) -> list[Path]:
    """Predict the slices of a preprocessed dataset (all, or those of `splits`); reconstruct volumes when possible.

    In a `group` of processes (torchrun) each member segments its share of the slices and the main member
    writes the outputs (the others return an empty list).
    """
    dataset = PreprocessedDataset(dataset_dir)
    rows = dataset.rows() if splits is None else np.flatnonzero(dataset.manifest.split.isin(list(splits)).to_numpy())
    if len(rows) == 0:
        raise MedpromptError(f"{dataset.manifest_path}: no slice in split {list(splits or [])}")
    label = int(model.config["dataset"]["target_label"])
    manifest = dataset.manifest.iloc[rows].reset_index(drop=True)
    geometry = has_source_geometry(manifest)
    if geometry:
        check_reconstructable(manifest)
    box_prompt = box_prompt or model.method.needs_boxes
    mine = group.share(rows)
    if box_prompt:
        if not dataset.has_masks:
            raise MedpromptError(f"{dataset.slices_path}: no masks to take the box prompts from")
        boxes = boxes_from_dataset(dataset, mine, label)
        bound = model.method if model.method.needs_boxes else BoxPrompted(model.backbone, model.config["train"])
        segmented = box_prompted_dataset(bound, dataset, mine, boxes, batch_size, progress, group.label("box prompts"))
    else:
        check_orientations(model.orientations, tuple(dataset.shape[1:]))
        segmented = segment_dataset(model.method, dataset, mine, batch_size, progress, model.refine,
                                    model.orientations, group.label("predict"))
    foreground, decoder_iou = group.join(segmented.probs > 0.5), group.join(segmented.decoder_iou)
    if not group.is_main:
        return []
    masks = label_masks(model, manifest, foreground, box_prompt)
    attrs = {"target_label": label, "dataset_fingerprint": dataset.fingerprint, "box_prompt": int(box_prompt),
             "method": model.method.name, "refined": int(model.refine.enabled and not box_prompt),
             "largest_component": int(model.refine.largest_component and not box_prompt),
             "orientations": "none" if box_prompt else model.orientations}
    with prediction_folder(out_dir) as written:
        signals = slice_signals(foreground, masks, decoder_iou)
        written.append(write_predictions(out_dir, pd.concat([manifest, signals], axis=1), masks, attrs))
        written.append(write_quality(out_dir, quality_table(manifest, signals)))
        if geometry:
            written += reconstruct(manifest, masks, out_dir, kind="label", progress=progress)
    return written
