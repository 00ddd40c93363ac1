"""What a backbone expects of its input and how its output maps back: one object per backbone.

Everything that differs between SAM-family backbones outside their weights lives
here: the square input side, how a slice is resized into it (stretched, as
MedSAM does, or longest side resized and the rest padded at the bottom/right,
as LiteMedSAM does), the intensity normalisation (min-max to [0,1], three
channels), how boxes are scaled into the prompt encoder's frame, and which part
of the low-resolution logits covers the slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.nn import functional as F

Resize = Literal["stretch", "longest_side"]
RESIZE_POLICIES = ("stretch", "longest_side")
CONSTANT_RANGE = 1e-6  # a slice whose intensity range is below this (in [0,1] units) is treated as blank


@dataclass(frozen=True)
class InputSpec:
    """Input frame of a backbone: `size` x `size` pixels, low-res logits of `low_res` x `low_res`."""

    size: int
    resize: Resize
    low_res: int = 256

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize policy {self.resize!r} is not one of {RESIZE_POLICIES}")

    def scale(self, image_size: tuple[int, int]) -> tuple[float, float]:
        """(sy, sx): input-frame pixels per slice pixel along each axis."""
        h, w = image_size
        if self.resize == "stretch":
            return self.size / h, self.size / w
        s = self.size / max(h, w)
        return s, s

    def content_shape(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the part of the input frame that the slice covers after resizing (rounded)."""
        sy, sx = self.scale(image_size)
        h, w = image_size
        return max(1, min(self.size, int(h * sy + 0.5))), max(1, min(self.size, int(w * sx + 0.5)))

    def low_res_shape(self, image_size: tuple[int, int]) -> tuple[int, int]:
        """(h, w) of the part of the low-res logits that covers the slice."""
        h, w = self.content_shape(image_size)
        return -(-h * self.low_res // self.size), -(-w * self.low_res // self.size)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Grey slices [B,H,W] of any intensity range -> [B,3,size,size] in [0,1].

        Each slice is resized into its content shape (area averaging when
        shrinking, bilinear when enlarging; bicubic with antialiasing when
        stretched), min-max scaled to [0,1] and zero-padded at the bottom/right.
        A blank slice stays exactly 0 rather than turning interpolation noise into contrast.
        """
        x = images.float().unsqueeze(1)
        x = _min_max(x)
        h, w = self.content_shape(tuple(images.shape[-2:]))
        if (h, w) != tuple(images.shape[-2:]):
            x = _resize(x, (h, w), self.resize)
        x = _min_max(x)
        x = F.pad(x, (0, self.size - w, 0, self.size - h))
        return x.expand(-1, 3, -1, -1)

    def low_res_images(self, images: torch.Tensor) -> torch.Tensor:
        """Grey slices [B,H,W] -> [B,1,low_res,low_res] in [0,1]: the input frame (`preprocess`) at the
        resolution of the low-res logits, pixel for pixel, for methods that read the slices themselves."""
        x = self.preprocess(images)[:, :1]
        return x if self.low_res == self.size else F.interpolate(x, size=(self.low_res, self.low_res), mode="area")

    def boxes_to_input(self, boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Boxes [K,4] (x_min, y_min, x_max, y_max in slice pixels) -> the prompt encoder's frame."""
        sy, sx = self.scale(image_size)
        return boxes * torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype, device=boxes.device)

    def boxes_to_low_res(self, boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
        """Inclusive pixel boxes [K,4] of a slice -> inclusive boxes on the cropped low-res logits."""
        grid_h, grid_w = self.low_res_shape(image_size)
        sy, sx = (s * self.low_res / self.size for s in self.scale(image_size))
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scaled = np.stack([np.floor(boxes[:, 0] * sx), np.floor(boxes[:, 1] * sy),
                           np.ceil((boxes[:, 2] + 1) * sx) - 1, np.ceil((boxes[:, 3] + 1) * sy) - 1], axis=1)
        limit = np.array([grid_w, grid_h, grid_w, grid_h]) - 1
        return np.clip(scaled, 0, limit).astype(np.int64)

    def low_res_boxes_to_slice(self, boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
        """Inclusive boxes [K,4] on the cropped low-res logits -> the slice pixels they cover (rounded outwards)."""
        sy, sx = (s * self.low_res / self.size for s in self.scale(image_size))
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        scaled = np.stack([np.floor(boxes[:, 0] / sx), np.floor(boxes[:, 1] / sy),
                           np.ceil((boxes[:, 2] + 1) / sx) - 1, np.ceil((boxes[:, 3] + 1) / sy) - 1], axis=1)
        limit = np.array([image_size[1], image_size[0], image_size[1], image_size[0]]) - 1
        return np.clip(scaled, 0, limit).astype(np.int64)

    def crop_low_res(self, logits: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Low-res logits [B,1,low_res,low_res] -> the part covering the slice, [B,1,h,w]."""
        h, w = self.low_res_shape(image_size)
        return logits[..., :h, :w]

    def logits_to_image(self, logits: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Low-res logits [B,1,low_res,low_res] -> logits [B,1,H,W] on the slice (crop, then bilinear)."""
        cropped = self.crop_low_res(logits, image_size).float()
        return F.interpolate(cropped, size=tuple(image_size), mode="bilinear", align_corners=False)


def _min_max(x: torch.Tensor) -> torch.Tensor:
    """Scale each image of [B,1,H,W] to [0,1]; a (nearly) constant image becomes 0."""
    lo = x.amin(dim=(2, 3), keepdim=True)
    span = x.amax(dim=(2, 3), keepdim=True) - lo
    return torch.where(span > CONSTANT_RANGE, (x - lo) / span.clamp_min(CONSTANT_RANGE), torch.zeros_like(x))


def _resize(x: torch.Tensor, shape: tuple[int, int], policy: Resize) -> torch.Tensor:
    """Resize [B,1,H,W] to `shape` with the interpolation the policy's reference preprocessing uses."""
    if policy == "stretch":
        return F.interpolate(x, size=shape, mode="bicubic", align_corners=False, antialias=True).clamp(0.0, 1.0)
    if shape[0] <= x.shape[-2] and shape[1] <= x.shape[-1]:
        return F.interpolate(x, size=shape, mode="area")
    return F.interpolate(x, size=shape, mode="bilinear", align_corners=False)
