"""Pretrain the bundled `medprompt_tiny` backbone on synthetic phantoms, prompted by boxes.

The data are the project's own ACDC-, CAMUS- and HC18-like phantoms, prepared
exactly as the dataset pipelines present slices (percentile clipping to uint8,
in-plane resampling, centre crop/pad from the bundled dataset configs). Every
step encodes a batch of slices and decodes several box prompts per slice: one
structure, one connected component of it, or the union of several structures,
each box jittered by a few pixels. The loss is BCE + soft Dice between the
256x256 low-res logits and the target mask at that size; the forward pass runs
under bfloat16 autocast when `training.bf16` is set (weights stay fp32).
Everything is seeded, so rerunning the command reproduces the weights' quality.
"""

from __future__ import annotations

import json
import math
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import torch
from safetensors.torch import save_file
from torch.nn import functional as F
from tqdm.auto import tqdm

from medprompt import __version__
from medprompt.atomic import atomic_path
from medprompt.backbone import Backbone, load_backbone, upsample_logits
from medprompt.config import load_config
from medprompt.device import autocast
from medprompt.geometry import SliceGeometry, forward_image, forward_labels
from medprompt.tiny_sam import INPUT_SIZE, build_tiny_backbone
from preprocessing import phantoms
from preprocessing.intensity import normalise, to_uint8

KINDS = ("acdc", "camus", "hc18")
STRUCTURES = {
    "acdc": {1: "RV", 2: "myocardium", 3: "LV"},
    "camus": {1: "LV", 2: "myocardium", 3: "LA"},
    "hc18": {1: "head"},
}
TRAIN_STREAM, EVAL_STREAM = 0, 1


@dataclass(frozen=True)
class PreparedSlice:
    """One slice as a dataset pipeline stores it: uint8 image and label map [S,S]."""

    kind: str
    image: np.ndarray
    labels: np.ndarray


def phantom_stream(kind: str, seed: int, stream: int) -> np.random.Generator:
    """The random stream of one phantom kind; training and evaluation streams never overlap."""
    return np.random.default_rng([seed, KINDS.index(kind), stream])


def prepare_volume(kind: str, volume: np.ndarray, labels: np.ndarray, spacing: tuple[float, float]) -> list[PreparedSlice]:
    """Slices [Z,rows,cols] of one case -> prepared slices, with the bundled dataset config's recipe."""
    config = load_config(kind)
    intensity, geometry_cfg = config["intensity"], config["geometry"]
    normalised = normalise(volume.astype(np.float32), intensity["scope"], tuple(intensity["percentiles"]))
    target = geometry_cfg.get("target_spacing")
    geometry = SliceGeometry.plan(volume.shape[1:], spacing, tuple(target) if target else None, int(geometry_cfg["size"]))
    return [
        PreparedSlice(
            kind,
            to_uint8(forward_image(image, geometry, geometry_cfg["image_interpolation"])),
            forward_labels(label, geometry, geometry_cfg["label_interpolation"]),
        )
        for image, label in zip(normalised, labels)
    ]


def phantom_slices(kind: str, rng: np.random.Generator) -> list[PreparedSlice]:
    """Draw one phantom case of `kind` and prepare its labelled slices (an ACDC patient gives ED and ES)."""
    if kind == "acdc":
        out = []
        for frame in phantoms.acdc_case(rng).values():
            volume, labels = frame.image.transpose(2, 1, 0), frame.label.transpose(2, 1, 0)
            out += prepare_volume(kind, volume, labels, (frame.spacing[1], frame.spacing[0]))
    elif kind == "camus":
        view = phantoms.camus_view(rng, str(rng.choice(phantoms.CAMUS_VIEWS)), str(rng.choice(phantoms.PHASES)))
        out = prepare_volume(kind, view.image[None], view.label[None], (view.spacing[1], view.spacing[0]))
    else:
        head = phantoms.hc18_image(rng)
        out = prepare_volume(kind, head.image[None], head.mask[None], (head.pixel_size, head.pixel_size))
    return [s for s in out if s.labels.any()]


def model_grid_labels(labels: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Label map [S,S] -> [size,size] by per-class area averaging and argmax (no class drift)."""
    values = np.union1d([0], np.unique(labels)).astype(np.uint8)
    scores = np.stack([cv2.resize((labels == v).astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) for v in values])
    return values[np.argmax(scores, axis=0)]


def tight_box(mask: np.ndarray) -> np.ndarray:
    """Inclusive pixel box (x_min, y_min, x_max, y_max) of a non-empty binary mask."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.int64)


class PhantomPool:
    """Prepared training slices on the model's 256x256 grid: network inputs, label maps, kind of each."""

    def __init__(self, backbone: Backbone, data_cfg: dict[str, Any], seed: int, progress: bool = True):
        counts = {"acdc": data_cfg["acdc_patients"], "camus": data_cfg["camus_views"], "hc18": data_cfg["hc18_images"]}
        inputs, labels, kinds = [], [], []
        bar = tqdm(total=sum(counts.values()), desc="phantoms", unit="case", disable=not progress)
        for kind, count in counts.items():
            rng = phantom_stream(kind, seed, TRAIN_STREAM)
            for _ in range(count):
                slices = phantom_slices(kind, rng)
                if slices:
                    images = torch.from_numpy(np.stack([s.image for s in slices]))
                    inputs.append(backbone.preprocess(images)[:, 0].half())
                    labels += [model_grid_labels(s.labels) for s in slices]
                    kinds += [kind] * len(slices)
                bar.update()
        bar.close()
        self.inputs = torch.cat(inputs)
        self.labels = np.stack(labels)
        self.kinds = np.array(kinds)
        self.rows_of = {kind: np.flatnonzero(self.kinds == kind) for kind in KINDS if (self.kinds == kind).any()}

    def __len__(self) -> int:
        return len(self.kinds)

    def sample_rows(self, rng: np.random.Generator, count: int, weights: dict[str, float]) -> np.ndarray:
        """`count` slices: a kind drawn with the given weights, then a slice of that kind."""
        kinds = list(self.rows_of)
        p = np.array([float(weights[k]) for k in kinds])
        return np.array([rng.choice(self.rows_of[kinds[k]]) for k in rng.choice(len(kinds), size=count, p=p / p.sum())])


class PromptSampler:
    """Draws box prompts and their target masks from a label map (the data recipe)."""

    def __init__(self, data_cfg: dict[str, Any]):
        self.min_area = int(data_cfg["min_area"])
        self.jitter = int(data_cfg["box_jitter"])
        self.union_fraction = float(data_cfg["union_fraction"])
        self.component_fraction = float(data_cfg["component_fraction"])

    def targets(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One target mask [H,W] bool: a structure, one of its components, or a union of structures."""
        present = [v for v in np.unique(labels) if v and (labels == v).sum() >= self.min_area]
        if not present:
            return labels > 0
        singles = {v: labels == v for v in present}
        if len(present) > 1 and rng.random() < self.union_fraction:
            chosen = rng.choice(present, size=int(rng.integers(2, len(present) + 1)), replace=False)
            union = np.isin(labels, chosen)
            box = tight_box(union)
            if all(np.abs(box - tight_box(m)).max() > 2 for m in singles.values()):
                return union
        mask = singles[present[int(rng.integers(len(present)))]]
        if rng.random() < self.component_fraction:
            count, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
            big = [c for c in range(1, count) if stats[c, cv2.CC_STAT_AREA] >= self.min_area]
            if len(big) > 1:
                return components == big[int(rng.integers(len(big)))]
        return mask

    def box(self, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The mask's tight box with each side moved by up to `box_jitter` pixels, kept inside the image."""
        h, w = mask.shape
        box = tight_box(mask) + rng.integers(-self.jitter, self.jitter + 1, size=4)
        x0, y0 = np.clip(box[:2], 0, [w - 1, h - 1])
        x1, y1 = np.clip(box[2:], [x0, y0], [w - 1, h - 1])
        return np.array([x0, y0, x1, y1], dtype=np.float32)


def segmentation_loss(logits: torch.Tensor, targets: torch.Tensor, dice_weight: float) -> torch.Tensor:
    """BCE + dice_weight x soft Dice loss, logits and targets [B,1,H,W]."""
    bce = F.binary_cross_entropy_with_logits(logits, targets)
    probs = torch.sigmoid(logits).flatten(1)
    flat = targets.flatten(1)
    dice = 1 - (2 * (probs * flat).sum(1) + 1) / (probs.sum(1) + flat.sum(1) + 1)
    return bce + dice_weight * dice.mean()


def learning_rate(step: int, train_cfg: dict[str, Any]) -> float:
    """Linear warm-up, then cosine decay to 0 at the last step."""
    base, warmup, steps = float(train_cfg["lr"]), int(train_cfg["warmup_steps"]), int(train_cfg["steps"])
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def pretrain(config: dict[str, Any], progress: bool = True) -> tuple[Backbone, dict[str, Any]]:
    """Train a tiny backbone with the config's recipe, from scratch or from `init` weights; return it (eval mode), run facts."""
    seed = int(config["seed"])
    data_cfg, train_cfg = config["data"], config["training"]
    if config.get("threads"):
        torch.set_num_threads(int(config["threads"]))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    init = config.get("init")
    backbone = load_backbone("medprompt_tiny", init) if init else build_tiny_backbone(seed=seed)
    started = time.perf_counter()
    pool = PhantomPool(backbone, data_cfg, seed, progress)
    sampler = PromptSampler(data_cfg)
    backbone.requires_grad_(True)
    backbone.train()
    optimiser = torch.optim.AdamW(backbone.parameters(), lr=float(train_cfg["lr"]), weight_decay=float(train_cfg["weight_decay"]))
    per_image, batch = int(train_cfg["prompts_per_image"]), int(train_cfg["batch_size"])
    size = (INPUT_SIZE, INPUT_SIZE)
    bar = tqdm(range(int(train_cfg["steps"])), desc="pretrain", unit="step", disable=not progress)
    loss_value = float("nan")
    for step in bar:
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, train_cfg)
        rows = pool.sample_rows(rng, batch, data_cfg["kind_weights"])
        masks = [sampler.targets(pool.labels[r], rng) for r in rows for _ in range(per_image)]
        boxes = torch.from_numpy(np.stack([sampler.box(m, rng) for m in masks]))
        targets = torch.from_numpy(np.stack(masks)).float().unsqueeze(1)
        inputs = pool.inputs[torch.from_numpy(rows)].float().unsqueeze(1).expand(-1, 3, -1, -1)
        with autocast(backbone.device, cpu_bf16=bool(train_cfg["bf16"])):
            embeddings = backbone.image_encoder(inputs).repeat_interleave(per_image, dim=0)
            sparse, dense = backbone.embed_boxes(boxes, size)
            logits = backbone.decode(embeddings, sparse, dense)
        loss = segmentation_loss(logits.float(), targets, float(train_cfg["dice_weight"]))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        loss_value = loss.item() if math.isnan(loss_value) else 0.95 * loss_value + 0.05 * loss.item()
        bar.set_postfix(loss=f"{loss_value:.3f}")
    bar.close()
    backbone.requires_grad_(False)
    backbone.eval()
    facts = {"pool_slices": {k: int(len(v)) for k, v in pool.rows_of.items()}, "final_loss": round(loss_value, 4),
             "train_seconds": round(time.perf_counter() - started, 1)}
    if init:
        facts["init_sha256"] = backbone.checkpoint_sha256
        facts["init_provenance"] = read_provenance(Path(init))
    return backbone, facts


def read_provenance(weights: Path) -> dict[str, Any] | None:
    """The provenance JSON written beside `weights` by an earlier run, or None when there is none."""
    path = weights.with_suffix(".json")
    return json.loads(path.read_text()) if path.is_file() else None


def command_line(out: Path, config_path: Path | None, overrides: list[str]) -> str:
    """The `medprompt pretrain-backbone` command that reruns this recipe."""
    args = ["medprompt", "pretrain-backbone", "--out", str(out)]
    if config_path is not None:
        args += ["--config", str(config_path)]
    for item in overrides:
        args += ["--set", item]
    return shlex.join(args)


def dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two binary masks (1 when both are empty)."""
    total = prediction.sum() + truth.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(prediction, truth).sum() / total)


def held_out_slices(kind: str, seed: int, cases: int) -> Iterator[PreparedSlice]:
    """Prepared slices of `cases` phantom cases from the evaluation stream (never seen in pretraining)."""
    rng = phantom_stream(kind, seed, EVAL_STREAM)
    for _ in range(cases):
        yield from phantom_slices(kind, rng)


def box_prompt_dice(backbone: Backbone, kind: str, seed: int, cases: int, min_area: int) -> dict[str, float]:
    """Mean Dice per structure of `kind`, prompted by its tight box, on held-out prepared slices.

    Logits go through `Backbone.prompt` and `upsample_logits` to the prepared slice's size.
    """
    scores: dict[str, list[float]] = {name: [] for name in STRUCTURES[kind].values()}
    for item in held_out_slices(kind, seed, cases):
        present = [v for v in STRUCTURES[kind] if (item.labels == v).sum() >= min_area]
        if not present:
            continue
        size = item.labels.shape
        embedding = backbone.encode(item.image[None])
        boxes = torch.from_numpy(np.stack([tight_box(item.labels == v) for v in present]).astype(np.float32))
        logits = backbone.prompt(embedding.expand(len(present), -1, -1, -1), boxes, size)
        predictions = (upsample_logits(logits, size)[:, 0] > 0).cpu().numpy()
        for value, prediction in zip(present, predictions):
            scores[STRUCTURES[kind][value]].append(dice(prediction, item.labels == value))
    return {name: round(float(np.mean(v)), 4) for name, v in scores.items() if v}


def evaluate(backbone: Backbone, eval_cfg: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Held-out box-prompted Dice per phantom kind and structure."""
    return {
        kind: box_prompt_dice(backbone, kind, int(eval_cfg["seed"]), int(eval_cfg["cases"]), int(eval_cfg["min_area"]))
        for kind in KINDS
    }


def save_backbone(backbone: Backbone, path: Path, provenance: dict[str, Any]) -> None:
    """Write the weights as fp16 safetensors (integer buffers kept) and the provenance JSON beside them, atomically."""
    state = {
        k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in backbone.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"backbone": "medprompt_tiny", "medprompt_version": __version__})
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(provenance, indent=2) + "\n")


def main_pretrain(out: Path, config_path: Path | None = None, overrides: list[str] | None = None, progress: bool = True) -> Path:
    """`medprompt pretrain-backbone`: pretrain with the bundled recipe (updated by a YAML and overrides), save to `out`."""
    config = load_config("pretrain_backbone", config_path, overrides or [])
    backbone, facts = pretrain(config, progress)
    quality = evaluate(backbone, config["evaluation"])
    out = Path(out)
    provenance = {
        "backbone": "medprompt_tiny",
        "command": command_line(out, config_path, overrides or []),
        "medprompt_version": __version__,
        "torch_version": torch.__version__,
        "config": config,
        "parameters": sum(p.numel() for p in backbone.parameters()),
        **facts,
        "box_prompted_dice_held_out": quality,
    }
    save_backbone(backbone, out, provenance)
    return out
