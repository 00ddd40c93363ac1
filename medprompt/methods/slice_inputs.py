"""What a method reads (`Slices`) for rows of a preprocessed dataset or for new slices.

Embeddings come from the dataset's cache when it matches the backbone, else
the encoder runs; slices are read from `slices.h5` in contiguous runs and put
in the backbone's low-res frame. Only the fields asked for are made, so a
method that reads images alone never runs the encoder.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch

from medprompt.backbones import Backbone
from medprompt.backbones.embedding_cache import EmbeddingCache
from medprompt.common.device import autocast
from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import PreprocessedDataset
from medprompt.methods import Slices

CACHED_BATCH = 16  # cached embeddings read and decoded per batch: decoding batches well on any device


def reads_for(reads: Iterable[str], with_embeddings: bool) -> tuple[str, ...]:
    """The fields to load: the method's own `reads`, and the embeddings when something else draws on them too
    (a box-prompted second pass, pseudo-masks)."""
    return tuple(dict.fromkeys([*reads, *(["embeddings"] if with_embeddings else [])]))


def matching_cache(dataset: PreprocessedDataset, backbone: Backbone) -> EmbeddingCache | None:
    """The dataset's embedding cache for this backbone, or None when there is none that matches."""
    try:
        return EmbeddingCache(dataset, backbone.backbone_id, backbone.checkpoint_sha256)
    except MedpromptError:
        return None


def image_slices(backbone: Backbone, images: np.ndarray, reads: Iterable[str]) -> Slices:
    """`Slices` of grey slices [B,H,W] (uint8) on the backbone's device, encoding them if embeddings are read."""
    reads = set(reads)
    pixels = torch.from_numpy(np.ascontiguousarray(images)).to(backbone.device)
    embeddings = None
    if "embeddings" in reads:
        with autocast(backbone.device):
            embeddings = backbone.encode(pixels).float()
    frame = backbone.spec.low_res_images(pixels) if "images" in reads else None
    return Slices(embeddings, frame, tuple(images.shape[-2:]))


def dataset_slices(dataset: PreprocessedDataset, backbone: Backbone, rows: np.ndarray, reads: Iterable[str],
                   cache: EmbeddingCache | None = None) -> Slices:
    """`Slices` of manifest rows, kept on the CPU (a training set or held-out slices): embeddings from `cache`."""
    reads = set(reads)
    embeddings = images = None
    if "embeddings" in reads:
        if cache is None:
            raise MedpromptError(f"{dataset.root}: no embedding cache for {backbone.backbone_id}; run `medprompt embed`")
        embeddings = torch.from_numpy(cache.read(rows))
    if "images" in reads:
        images = backbone.spec.low_res_images(torch.from_numpy(dataset.images(rows))).cpu()
    return Slices(embeddings, images, tuple(dataset.shape[1:]))


def dataset_batches(dataset: PreprocessedDataset, backbone: Backbone, rows: np.ndarray, reads: Iterable[str],
                    batch_size: int) -> Iterator[tuple[np.ndarray, Slices]]:
    """Yield (row positions, `Slices` on the backbone's device) batches for prediction.

    Embeddings come from the cache when it matches (in batches of `CACHED_BATCH`), else they are encoded
    `batch_size` slices at a time.
    """
    reads = set(reads)
    cache = matching_cache(dataset, backbone) if "embeddings" in reads else None
    if cache is not None or "embeddings" not in reads:
        batch_size = CACHED_BATCH
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        if cache is None:
            yield batch, image_slices(backbone, dataset.images(batch), reads)
        else:
            yield batch, dataset_slices(dataset, backbone, batch, reads, cache).to(backbone.device)
