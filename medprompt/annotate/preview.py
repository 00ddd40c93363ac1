"""What the backbone makes of a drawn box: MedSAM's own use, the slice encoded as it is and prompted with the box.

The backbone loads on the first request, so the page opens at once; embeddings of
the last few slices are kept, so moving a box on a slice costs only the decoder.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch

from medprompt.annotate.images import Recent
from medprompt.backbones.base import Backbone

EMBEDDINGS_KEPT = 16
THRESHOLD = 0.5


class MaskPreview:
    """Box-prompted masks of one backbone on source slices."""

    def __init__(self, backbone: str | None = None, checkpoint: Path | None = None, device: str = "cpu",
                 engine: str = "auto"):
        self._settings = (backbone, checkpoint, device, engine)
        self._backbone: Backbone | None = None
        self._embeddings: Recent[torch.Tensor] = Recent(EMBEDDINGS_KEPT)
        self._lock = threading.Lock()

    @property
    def backbone(self) -> Backbone:
        """The backbone, loaded on first use."""
        if self._backbone is None:
            from medprompt.backbones.registry import load_backbone

            name, checkpoint, device, engine = self._settings
            self._backbone = load_backbone(name, checkpoint, device, engine=engine)
        return self._backbone

    @torch.no_grad()
    def mask(self, key: tuple[str, int], image: np.ndarray, boxes: list[list[int]]) -> np.ndarray:
        """The union [rows, cols] uint8 (0/1) of the backbone's masks for each box (inclusive source pixels) on
        the slice `image`, whose embedding is kept under `key` (case, slice index)."""
        size = tuple(image.shape)
        if not boxes:
            return np.zeros(size, dtype=np.uint8)
        with self._lock:
            backbone = self.backbone
            embedding = self._embeddings.get(key, lambda: backbone.encode(image[None]))
            logits = backbone.prompt(embedding.expand(len(boxes), -1, -1, -1), np.asarray(boxes, np.float32), size)
            probs = torch.sigmoid(backbone.logits_to_image(logits, size))[:, 0].amax(dim=0)
        return (probs > THRESHOLD).cpu().numpy().astype(np.uint8)
