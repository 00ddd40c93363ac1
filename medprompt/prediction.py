"""Automatic segmentation: encoder -> prompt learner -> mask decoder (-> box-prompted second pass) -> mask.

No box and no label is needed. The box-prompted path (MedSAM given the tight
ground-truth boxes) is here too: it is the upper bound the paper compares with.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from medprompt.backbones import Backbone
from medprompt.boxes import Boxes
from medprompt.dataset import PreprocessedDataset
from medprompt.device import autocast
from medprompt.embedding_cache import EmbeddingCache
from medprompt.errors import MedpromptError
from medprompt.refinement import RefineConfig, refine


CACHED_BATCH = 16  # cached embeddings read and decoded per batch: decoding batches well on any device


def embeddings_for(dataset: PreprocessedDataset, backbone: Backbone, rows: np.ndarray, batch_size: int):
    """Yield (row positions, embeddings) batches: from the dataset's cache when it matches, else encoded now.

    `batch_size` is the encoder's; cached embeddings come in batches of `CACHED_BATCH`.
    """
    try:
        cache = EmbeddingCache(dataset, backbone.backbone_id, backbone.checkpoint_sha256)
    except MedpromptError:
        cache = None
    if cache is not None:
        batch_size = CACHED_BATCH
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        if cache is not None:
            yield batch, torch.from_numpy(cache.read(batch)).to(backbone.device, torch.float32)
        else:
            with autocast(backbone.device):
                yield batch, backbone.encode(torch.from_numpy(dataset.images(batch))).float()


@torch.no_grad()
def segment_embeddings(backbone: Backbone, learner: nn.Module, embeddings: torch.Tensor, size: tuple[int, int],
                       refine_config: RefineConfig = RefineConfig()) -> torch.Tensor:
    """Foreground probabilities [B,H,W] from embeddings, with prompts from the learner (then refined if enabled)."""
    with autocast(backbone.device):
        sparse, dense = learner(embeddings)
        logits = backbone.decode(embeddings, sparse, dense)
        probs = torch.sigmoid(backbone.logits_to_image(logits, size))[:, 0]
        return refine(backbone, embeddings, probs, size, refine_config)


@torch.no_grad()
def segment_images(backbone: Backbone, learner: nn.Module, images: np.ndarray, batch_size: int = 8,
                   progress: bool = True, refine_config: RefineConfig = RefineConfig()) -> np.ndarray:
    """Probabilities [N,H,W] float32 for uint8 slices [N,H,W] never seen before (no cache)."""
    out = np.zeros(images.shape, dtype=np.float32)
    for start in tqdm(range(0, len(images), batch_size), desc="predict", unit="batch", disable=not progress):
        batch = torch.from_numpy(images[start : start + batch_size])
        with autocast(backbone.device):
            embeddings = backbone.encode(batch).float()
        probs = segment_embeddings(backbone, learner, embeddings, images.shape[1:], refine_config)
        out[start : start + len(batch)] = probs.float().cpu().numpy()
    return out


@torch.no_grad()
def segment_dataset(backbone: Backbone, learner: nn.Module, dataset: PreprocessedDataset, rows: np.ndarray,
                    batch_size: int = 8, progress: bool = True, refine_config: RefineConfig = RefineConfig()) -> np.ndarray:
    """Probabilities [len(rows),H,W] float32 for slices of a preprocessed dataset."""
    size = dataset.shape[1:]
    out = np.zeros((len(rows), *size), dtype=np.float32)
    position = {r: i for i, r in enumerate(rows)}
    bar = tqdm(total=len(rows), desc="predict", unit="slice", disable=not progress)
    for batch, embeddings in embeddings_for(dataset, backbone, rows, batch_size):
        probs = segment_embeddings(backbone, learner, embeddings, size, refine_config)
        out[[position[r] for r in batch]] = probs.float().cpu().numpy()
        bar.update(len(batch))
    bar.close()
    return out


@torch.no_grad()
def box_prompted_dataset(backbone: Backbone, dataset: PreprocessedDataset, rows: np.ndarray, boxes: Boxes,
                         batch_size: int = 8, progress: bool = True) -> np.ndarray:
    """Probabilities [len(rows),H,W] of the backbone prompted with each slice's boxes (union over boxes)."""
    size = dataset.shape[1:]
    out = np.zeros((len(rows), *size), dtype=np.float32)
    ids = dataset.manifest.slice_id.to_numpy()
    position = {r: i for i, r in enumerate(rows)}
    bar = tqdm(total=len(rows), desc="box prompts", unit="slice", disable=not progress)
    for batch, embeddings in embeddings_for(dataset, backbone, rows, batch_size):
        owner, prompt_boxes = [], []
        for j, r in enumerate(batch):
            for box in boxes[ids[r]]:
                owner.append(j)
                prompt_boxes.append(box)
        if prompt_boxes:
            owner_t = torch.tensor(owner, device=backbone.device)
            with autocast(backbone.device):
                logits = backbone.prompt(embeddings[owner_t], torch.tensor(np.array(prompt_boxes)), size)
            probs = torch.sigmoid(backbone.logits_to_image(logits, size))[:, 0].float()
            index = owner_t.view(-1, 1, 1).expand_as(probs)
            merged = torch.zeros((len(batch), *size), device=probs.device).scatter_reduce_(0, index, probs, "amax")
            out[[position[r] for r in batch]] = merged.cpu().numpy()
        bar.update(len(batch))
    bar.close()
    return out
