"""Train a method (`medprompt.methods`) from tight boxes alone (or from masks), on cached embeddings or slices.

Cached embeddings and/or slices -> method (prompt learner and mask decoder, or a network) -> low-res logits
-> box-constraint losses, or Dice + cross-entropy against the masks the backbone
draws in the boxes (`supervision: pseudo_masks`) or the dataset's masks (`masks`).
The training slices can also be shown flipped and turned (`orientations`), each
orientation embedded once when training starts. Checkpointed every epoch; `resume`
continues an interrupted run and, on the CPU, ends with the same weights as an
uninterrupted one.
A run whose predictions on its training slices stay empty (or fill the image)
starts again from a new initialisation, and fails with a message rather than
write an empty model. Every few epochs the method is
scored on held-out slices from their boxes alone; the best epoch is written.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from medprompt import __version__
from medprompt.backbones import Backbone
from medprompt.backbones.embedding_cache import EmbeddingCache
from medprompt.common.atomic import atomic_path
from medprompt.common.config import (
    apply_overrides,
    bundled_config_path,
    dump_config,
    load_config,
    merge,
    read_yaml,
    user_config_path,
)
from medprompt.common.config_rules import Rule, check_config, lookup
from medprompt.common.device import PRECISIONS, autocast, cpu_bf16_for
from medprompt.common.errors import MedpromptError
from medprompt.common.locking import LOCK, exclusive
from medprompt.common.output_paths import check_output_folder
from medprompt.data.boxes import (
    TrainingSet,
    boxes_from_dataset,
    main_box,
    read_box_csv,
    select_training_set,
    write_box_csv,
)
from medprompt.data.dataset import PreprocessedDataset, source_kinds
from medprompt.methods import DEFAULT_METHOD, PROMPT_OFFSETS, Method, available_methods, build_method, method_class
from medprompt.methods.orientations import ORIENTATION_SETS, add_orientations, check_orientations
from medprompt.methods.refinement import RefineConfig, prompt_box, second_pass
from medprompt.methods.run_dir import BOXES, CONFIG, LOG, RESUME_STATE, WEIGHTS, weights_bytes
from medprompt.methods.slice_inputs import dataset_slices, matching_cache, reads_for
from medprompt.training.augmentation import AugmentConfig, SliceAugmentation
from medprompt.training.box_losses import BoxConstraintLoss, BoxLossConfig
from medprompt.training.collapse import HEALTHY, CollapseConfig, box_fill, classify
from medprompt.training.mask_targets import MaskLoss, low_res_masks, pseudo_masks
from medprompt.training.selection import BoxSelector

FRACTION = Rule("number", 0, 1)
SUPERVISIONS = ("boxes", "pseudo_masks", "masks")
TRAIN_RULES = {
    "prompt_offset": Rule("choice", choices=PROMPT_OFFSETS), "start_box": Rule("numbers", 0, length=4, nullable=True),
    "supervision": Rule("choice", choices=SUPERVISIONS),
    "epochs": Rule("int", 1), "batch_size": Rule("int", 1), "lr": Rule("number", 1e-12),
    "weight_decay": Rule("number", 0), "lr_step_at": FRACTION, "lr_gamma": Rule("number", 1e-12, 1),
    "shots": Rule("int", 1, nullable=True), "seed": Rule("int", 0), "label": Rule("int", 0, nullable=True),
    "orientations": Rule("choice", choices=tuple(ORIENTATION_SETS)),
    "min_target_area": Rule("int", 1), "cpu_precision": Rule("choice", choices=PRECISIONS),
    "refine.enabled": Rule("bool"), "refine.min_island": FRACTION, "refine.box_margin": Rule("number", 0, 0.5),
    "refine.distill": Rule("number", 0),
    "refine.second_pass_loss": Rule("number", 0),
    "augment.enabled": Rule("bool"), "augment.rotate": Rule("number", 0, 180), "augment.scale": Rule("number", 0, 0.9),
    "augment.translate": Rule("number", 0, 0.5), "augment.contrast": FRACTION,
    "selection.split": Rule("choice", choices=("train", "val", "test"), nullable=True),
    "selection.every": Rule("int", 1), "selection.max_slices": Rule("int", 1), "selection.after": FRACTION,
    "collapse.empty_below": FRACTION, "collapse.full_above": FRACTION, "collapse.patience": Rule("int", 1),
    "collapse.max_recoveries": Rule("int", 0),
    "loss.band_width": Rule("int", 0), "loss.t": Rule("number", 1e-12),
    "loss.size_bounds": Rule("numbers", 0, 1, length=2, increasing=True),
    "loss.w_outside": Rule("number", 0), "loss.w_tightness": Rule("number", 0), "loss.w_size": Rule("number", 0),
}


class Trainer:
    """One training run: data in memory, model, optimiser, schedule, resume state, collapse recovery, selection."""

    def __init__(self, dataset: PreprocessedDataset, backbone: Backbone, config: dict[str, Any], run_dir: Path,
                 training_set: TrainingSet, progress: bool = True):
        self.dataset, self.backbone, self.config, self.run_dir = dataset, backbone, config, run_dir
        self.cfg = config["train"]
        self.device = backbone.device
        self.cpu_bf16 = cpu_bf16_for(self.device, self.cfg["cpu_precision"])
        self.image_size = tuple(dataset.shape[1:])
        self.supervision = self.cfg["supervision"]
        self.refine = RefineConfig.from_train_config(self.cfg)
        method = method_class(self.cfg["method"])
        reads = training_reads(method, self.cfg)
        cache = matching_cache(dataset, backbone) if "embeddings" in reads else None
        count = len(training_set.rows) * (1 + len(ORIENTATION_SETS[self.cfg["orientations"]]))
        if cache is not None and not cache.fits_in_memory(count):
            raise MedpromptError(f"{cache.path}: {count} training embeddings do not fit in memory; use --shots")
        label = int(config["dataset"]["target_label"])
        masks = dataset.masks(training_set.rows) == label if self.supervision == "masks" else None
        oriented = add_orientations(dataset_slices(dataset, backbone, training_set.rows, reads, cache), dataset,
                                    training_set.rows, [training_set.boxes[s] for s in training_set.slice_ids], masks,
                                    self.cfg["orientations"], backbone, reads, progress)
        self.inputs, self.shots = oriented.slices, len(training_set.rows)
        self.orientation_count = len(oriented.boxes) // self.shots  # the slices as they are, then turned
        self.low_res_boxes = [backbone.spec.boxes_to_low_res(b, self.image_size) for b in oriented.boxes]
        self.targets = None
        if self.supervision == "masks":
            self.targets = low_res_masks(oriented.masks, backbone.spec.low_res_shape(self.image_size))
            self.loss = MaskLoss()
        elif self.supervision == "pseudo_masks":
            self.targets = pseudo_masks(backbone, self.inputs.embeddings, oriented.boxes, self.image_size)
            self.loss = MaskLoss()
        else:
            loss_cfg = dict(self.cfg["loss"])
            loss_cfg["size_bounds"] = tuple(loss_cfg["size_bounds"])
            self.loss = BoxConstraintLoss(BoxLossConfig(**loss_cfg))
        self.collapse = CollapseConfig(**self.cfg["collapse"])
        augment = AugmentConfig.from_train_config(self.cfg)
        self.augmentation = SliceAugmentation(augment, backbone.spec.low_res, backbone.spec.low_res_shape(self.image_size)) \
            if augment.enabled else None
        self.selector = self.build_selector(cache, method.reads_from(self.cfg))
        self.recoveries = 0
        self.log: list[dict[str, Any]] = []
        self.start()

    def start(self) -> None:
        """A new method (initialised from seed + number of restarts, set up from the training slices when it takes
        references), optimiser and schedule, at epoch 0."""
        torch.manual_seed(self.cfg["seed"] + self.recoveries)
        self.method = build_method(self.backbone, self.cfg)
        if self.method.references:
            self.method.setup(self.inputs.to(self.device), self.targets.to(self.device))
        self.epoch = self.unhealthy_epochs = 0
        self.best: dict[str, Any] = {"score": -1.0, "epoch": 0, "state": None}
        if not self.method.trainable:
            return
        learned = [p for p in self.method.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(learned, lr=self.cfg["lr"], weight_decay=self.cfg["weight_decay"])
        step_epoch = max(1, round(self.cfg["epochs"] * self.cfg["lr_step_at"]))
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, [step_epoch], gamma=self.cfg["lr_gamma"])

    def build_selector(self, cache: EmbeddingCache | None, reads: tuple[str, ...]) -> BoxSelector | None:
        """Held-out slices of the selection split with boxes from the dataset's masks; None when there are none."""
        cfg = self.cfg["selection"]
        if cfg["split"] is None or not self.dataset.has_masks:
            return None
        rows = self.dataset.rows(cfg["split"], with_target=True)
        label = int(self.config["dataset"]["target_label"])
        boxes = boxes_from_dataset(self.dataset, rows, label, self.cfg["min_target_area"])
        ids = self.dataset.manifest.slice_id.to_numpy()
        rows = np.array([r for r in rows if len(boxes[ids[r]])], dtype=np.int64)[: cfg["max_slices"]]
        if len(rows) == 0:
            return None
        low_res = [self.backbone.spec.boxes_to_low_res(boxes[ids[r]], self.image_size) for r in rows]
        held_out = dataset_slices(self.dataset, self.backbone, rows, reads, cache)
        return BoxSelector(self.backbone, held_out, low_res, self.image_size,
                           self.refine.min_island if self.refine.enabled else 0.0)

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's batches of training-set positions, each training slice once (in an orientation drawn for it
        when there are several); a function of (seed, epoch) alone, so resuming repeats it."""
        rng = np.random.default_rng([self.cfg["seed"], epoch])
        order = rng.permutation(self.shots)
        if self.orientation_count > 1:
            order = order + self.shots * rng.integers(0, self.orientation_count, self.shots)
        size = self.cfg["batch_size"]
        return [order[i : i + size] for i in range(0, len(order), size)]

    def step(self, batch: np.ndarray, index: int) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """One optimisation step on a batch of training-set positions (the epoch's `index`-th): loss terms, box
        fill and outside fill."""
        slices = self.inputs[batch].to(self.device)
        boxes = [self.low_res_boxes[i] for i in batch]
        targets = None if self.targets is None else self.targets[batch].to(self.device)
        if self.augmentation is not None:
            slices, targets, boxes = self.augmentation(slices, targets, boxes, (self.cfg["seed"], self.epoch, index))
        with autocast(self.device, self.cpu_bf16):
            logits = self.method(slices)
        logits = self.backbone.spec.crop_low_res(logits, self.image_size).float()
        terms = self.supervised_loss(logits, targets, boxes)
        if self.refine.distill > 0 or self.refine.second_pass_loss > 0:
            for key, value in self.second_pass_terms(slices.embeddings, logits, targets, boxes).items():
                terms[key] = value
                terms["loss"] = terms["loss"] + getattr(self.refine, key) * value
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optimizer.step()
        return {k: float(v.detach()) for k, v in terms.items()}, *box_fill(logits, boxes)

    def supervised_loss(self, logits: torch.Tensor, targets: torch.Tensor | None,
                        boxes: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """The box losses, or Dice + cross-entropy against the mask targets, of cropped low-res logits."""
        return self.loss(logits, boxes) if self.supervision == "boxes" else self.loss(logits, targets)

    def second_pass_terms(self, embeddings: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor | None,
                          boxes: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """SAM-SP's terms on the box-prompted second pass that the first pass (cropped low-res `logits`) implies:
        `distill`, the first pass's cross-entropy against it, and `second_pass_loss`, its own supervised loss (against
        the batch's targets, or its annotated `boxes`).

        Only slices where the first pass predicts anything count (0 when none does). The box is taken on the
        low-res mask and mapped to the slice, so no full-size upsampling is done per step.
        """
        spec = self.backbone.spec
        first = [main_box(mask, self.refine.min_island) for mask in (logits.detach()[:, 0] > 0).cpu().numpy()]
        prompts = [None if box is None else prompt_box(spec.low_res_boxes_to_slice(box, self.image_size)[0],
                                                       self.refine, self.image_size) for box in first]
        with torch.set_grad_enabled(self.refine.second_pass_loss > 0), autocast(self.device, self.cpu_bf16):
            keep, second = second_pass(self.method, embeddings, prompts, self.image_size)
        wanted = [key for key in ("distill", "second_pass_loss") if getattr(self.refine, key) > 0]
        if not keep:
            return {key: logits.sum() * 0.0 for key in wanted}
        second = spec.crop_low_res(second, self.image_size).float()
        terms = {}
        if self.refine.distill > 0:
            terms["distill"] = F.binary_cross_entropy_with_logits(logits[keep], torch.sigmoid(second.detach()))
        if self.refine.second_pass_loss > 0:
            kept_targets = None if targets is None else targets[keep]
            terms["second_pass_loss"] = self.supervised_loss(second, kept_targets, [boxes[i] for i in keep])["loss"]
        return terms

    def fit(self, progress: bool = True) -> None:
        """Train until the configured epoch count; undo collapses; write the selected epoch's weights.

        An epoch is unhealthy when its predictions on the training slices are
        nearly empty everywhere (or fill the image). Predictions may dip and
        come back, so a run has collapsed after `patience` unhealthy epochs in a
        row, or when its last epoch is unhealthy. A collapse drifts on at any
        learning rate once it has begun (measured on CAMUS and HC18), so the run
        starts again from a new initialisation; it fails after `max_recoveries`.
        """
        epochs = self.cfg["epochs"]
        steps_per_epoch = len(self.batches(0))
        bar = tqdm(total=epochs * steps_per_epoch, initial=self.epoch * steps_per_epoch, unit="step",
                   desc="train", disable=not progress)
        while self.epoch < epochs:
            row = self.run_epoch(bar)
            if row["state"] == HEALTHY:
                self.unhealthy_epochs = 0
            else:
                self.unhealthy_epochs += 1
                if self.unhealthy_epochs >= self.collapse.patience or self.epoch == epochs:
                    self.recover(row, bar)
                    continue
            if self.selector is not None and self.selection_epoch(self.epoch):
                row["val_box_iou"] = self.selector.score(self.method)
                if row["val_box_iou"] > self.best["score"]:
                    self.best = {"score": row["val_box_iou"], "epoch": self.epoch,
                                 "state": {k: v.detach().clone() for k, v in self.method.trainable_state().items()}}
            self.log.append(row)
            self.save_resume_state()
        bar.close()
        self.write_weights()

    def selection_epoch(self, epoch: int) -> bool:
        """Whether `epoch` is scored for selection: every `every` epochs from `after` x the schedule on, and the last."""
        cfg, epochs = self.cfg["selection"], self.cfg["epochs"]
        return epoch == epochs or (epoch >= cfg["after"] * epochs and epoch % cfg["every"] == 0)

    def run_epoch(self, bar: tqdm) -> dict[str, Any]:
        """One pass over the training set; its log row (mean loss terms, box fills, state)."""
        self.method.train()
        start = time.perf_counter()
        sums: dict[str, float] = {}
        fills_in, fills_out = [], []
        for index, batch in enumerate(self.batches(self.epoch)):
            terms, fill_in, fill_out = self.step(batch, index)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v * len(batch)
            fills_in.append(fill_in)
            fills_out.append(fill_out)
            bar.update(1)
            bar.set_postfix(epoch=self.epoch + 1, loss=f"{terms['loss']:.4f}", box_fill=f"{np.mean(fill_in):.2f}")
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        self.epoch += 1
        n = self.shots
        fill_in, fill_out = float(np.concatenate(fills_in).mean()), float(np.concatenate(fills_out).mean())
        return {"epoch": self.epoch, **{k: v / n for k, v in sums.items()}, "box_fill": fill_in,
                "outside_fill": fill_out, "state": classify(fill_in, fill_out, self.collapse), "lr": lr,
                "seconds": time.perf_counter() - start}

    def recover(self, row: dict[str, Any], bar: tqdm) -> None:
        """Start again from a new initialisation after a collapse; an error after `max_recoveries` restarts."""
        self.recoveries += 1
        if self.recoveries > self.collapse.max_recoveries:
            self.log.append({**row, "state": f"{row['state']}: collapsed, no model written"})
            self.write_log()
            raise MedpromptError(
                f"{self.run_dir}: training collapsed ({row['state']}: box fill {row['box_fill']:.3f}, outside fill "
                f"{row['outside_fill']:.3f}) {self.recoveries} times; no model written. Try another --seed, more "
                "--shots, or check the boxes"
            )
        self.log.append({**row, "state": f"{row['state']}: restarted from initialisation {self.recoveries}"})
        bar.write(f"epoch {row['epoch']}: predictions on the training slices stayed {row['state']} (box fill "
                  f"{row['box_fill']:.3f}); starting again from a new initialisation ({self.recoveries} of "
                  f"{self.collapse.max_recoveries})")
        self.start()
        bar.n = 0
        bar.refresh()

    def write_weights(self) -> None:
        """The selected epoch's weights (the last epoch's without a selection split)."""
        metadata = {"method": self.cfg["method"], "medprompt_version": __version__, "epoch": str(self.epoch)}
        state = self.method.trainable_state()
        if self.best["state"] is not None:
            state = self.best["state"]
            metadata.update(epoch=str(self.best["epoch"]), val_box_iou=f"{self.best['score']:.4f}")
        with atomic_path(self.run_dir / WEIGHTS) as tmp:
            tmp.write_bytes(weights_bytes({k: v.detach().cpu().contiguous() for k, v in state.items()}, metadata))

    def save_resume_state(self) -> None:
        """Resumable state and the epoch log, each replaced atomically."""
        state = {"epoch": self.epoch, "method": self.method.trainable_state(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "log": self.log, "recoveries": self.recoveries,
                 "unhealthy_epochs": self.unhealthy_epochs, "best": self.best}
        with atomic_path(self.run_dir / RESUME_STATE) as tmp:
            torch.save(state, tmp)
        self.write_log()

    def write_log(self) -> None:
        """The epoch log, replaced atomically."""
        with atomic_path(self.run_dir / LOG) as tmp:
            pd.DataFrame(self.log).to_csv(tmp, index=False)

    def load_resume_state(self) -> None:
        """Continue from the last completed epoch."""
        path = self.run_dir / RESUME_STATE
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.recoveries = int(state["recoveries"])
            self.method.load_trainable_state(state["method"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.epoch = int(state["epoch"])
            self.log = list(state["log"])
            self.unhealthy_epochs = int(state["unhealthy_epochs"])
            self.best = dict(state["best"])
        except Exception as exc:  # noqa: BLE001 - any unreadable or foreign state gets the same message
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise MedpromptError(f"{path}: cannot resume from this state ({reason}); delete it to start the run "
                                 "over") from None


def training_reads(method: type[Method], train_cfg: dict[str, Any]) -> tuple[str, ...]:
    """What a run reads of its slices: the method's inputs, and the embeddings that pseudo-masks or the
    second-pass terms are drawn from."""
    refine = RefineConfig.from_train_config(train_cfg)
    return reads_for(method.reads_from(train_cfg), train_cfg["supervision"] == "pseudo_masks" or refine.distill > 0
                     or refine.second_pass_loss > 0)


def run_config(dataset: PreprocessedDataset, backbone: Backbone, train_cfg: dict[str, Any],
               checkpoint: str | os.PathLike | None) -> dict[str, Any]:
    """The resolved config a run records: what it trained on, with what, and how."""
    return {
        "medprompt_version": __version__,
        "dataset": {
            "path": str(dataset.root.resolve()),
            "name": dataset.name,
            "fingerprint": dataset.fingerprint,
            "target_label": int(train_cfg["label"] if train_cfg["label"] is not None else dataset.target_label),
            "slice_shape": list(dataset.shape[1:]),
            "preprocessing": dataset.attrs.get("config"),
            "source_kinds": source_kinds(dataset.manifest),
        },
        "backbone": {
            "id": backbone.backbone_id,
            "checkpoint": str(Path(checkpoint).resolve()) if checkpoint is not None else None,
            "checkpoint_sha256": backbone.checkpoint_sha256,
        },
        "train": train_cfg,
    }


def check_run_request(dataset: PreprocessedDataset, train_cfg: dict[str, Any], run_dir: str | os.PathLike,
                      boxes_csv: str | os.PathLike | None = None, resume: bool = False) -> TrainingSet:
    """Everything that can be refused before a backbone is loaded: the run folder, the settings, the training slices."""
    run_dir = check_output_folder(run_dir, "--out")
    methods = Rule("choice", choices=tuple(available_methods()))
    check_config(train_cfg, {"method": methods, **TRAIN_RULES})
    method = method_class(train_cfg["method"])
    check_config(train_cfg, method.rules)
    method.check_options(dict(train_cfg.get(method.name) or {}))
    if train_cfg["supervision"] not in method.supervisions:
        raise MedpromptError(f"--supervision {train_cfg['supervision']}: method {method.name} learns from "
                             f"{' or '.join(method.supervisions)} only")
    if lookup(train_cfg, "augment.enabled"):
        refine = RefineConfig.from_train_config(train_cfg)
        reader = f"method {method.name}" if "embeddings" in method.reads_from(train_cfg) else \
            "the second pass (refine.distill, refine.second_pass_loss)" if refine.distill or refine.second_pass_loss else None
        if reader is not None:
            raise MedpromptError(f"augment.enabled: {reader} reads cached embeddings, which cannot follow a "
                                 "transformed slice; --set augment.enabled=false")
    check_orientations(train_cfg["orientations"], tuple(dataset.shape[1:]))
    if train_cfg["supervision"] == "masks" and (boxes_csv is not None or not dataset.has_masks):
        raise MedpromptError(f"--supervision masks: needs the dataset's masks ({dataset.root} has "
                             f"{'masks, but --boxes was given' if dataset.has_masks else 'none'}); use --supervision boxes")
    if resume:
        if not (run_dir / CONFIG).is_file():
            raise MedpromptError(f"{run_dir}: nothing to resume (no {CONFIG})")
        if not (run_dir / BOXES).is_file():
            raise MedpromptError(f"{run_dir / BOXES}: missing; the run cannot be resumed without its training boxes")
        ids = _recorded_ids(run_dir)
        unknown = [s for s in ids if s not in dataset.index_of]
        if unknown:
            raise MedpromptError(f"{run_dir / BOXES}: slice {unknown[0]!r} is not in {dataset.manifest_path}")
        return TrainingSet(np.array([dataset.index_of[s] for s in ids]), ids, read_box_csv(run_dir / BOXES, dataset))
    if (run_dir / CONFIG).exists():
        raise MedpromptError(f"{run_dir}: already holds a run; use --resume to continue it or choose another --out")
    return select_training_set(dataset, train_cfg, boxes_csv)


def setting_differences(recorded: Any, current: Any, prefix: str = "") -> list[str]:
    """'key: recorded A, now B' for every leaf that differs between two nested configs."""
    if isinstance(recorded, dict) and isinstance(current, dict):
        return [line for key in dict.fromkeys([*recorded, *current])
                for line in setting_differences(recorded.get(key), current.get(key), f"{prefix}{key}.")]
    if recorded != current:
        return [f"{prefix.rstrip('.')}: recorded {recorded!r}, now {current!r}"]
    return []


def train(dataset: PreprocessedDataset, backbone: Backbone, train_cfg: dict[str, Any], run_dir: str | os.PathLike,
          boxes_csv: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
          resume: bool = False, progress: bool = True) -> Path:
    """Train (or resume) a run; returns the run directory. A method with nothing to learn only records the run.

    To resume with the recorded settings, pass `resumed_train_config(run_dir)` as `train_cfg`.
    """
    run_dir = Path(run_dir)
    training_set = check_run_request(dataset, train_cfg, run_dir, boxes_csv, resume)
    method_class(train_cfg["method"]).check_backbone(backbone, train_cfg)
    train_cfg = with_start_box(train_cfg, training_set, backbone, tuple(dataset.shape[1:]))
    config = run_config(dataset, backbone, train_cfg, checkpoint)
    if resume:
        recorded = read_yaml(run_dir / CONFIG)
        differences = setting_differences({k: recorded.get(k) for k in ("dataset", "train")},
                                          {k: config[k] for k in ("dataset", "train")})
        if differences:
            raise MedpromptError(f"{run_dir / CONFIG}: cannot resume, {'; '.join(differences)}; resume without "
                                 "changing them, or train into a new --out")
    method = method_class(train_cfg["method"])
    if (method.trainable or method.references) and "embeddings" in training_reads(method, train_cfg):
        EmbeddingCache(dataset, backbone.backbone_id, backbone.checkpoint_sha256)  # says what to run when missing
    made_folder = not run_dir.exists()
    try:
        with exclusive(run_dir, "medprompt train"):
            if not resume:
                write_box_csv(training_set.boxes, run_dir / BOXES)
                dump_config(config, run_dir / CONFIG)
            if not method.trainable and not method.references:
                with atomic_path(run_dir / WEIGHTS) as tmp:
                    tmp.write_bytes(weights_bytes({}, {"method": train_cfg["method"], "medprompt_version": __version__}))
                return run_dir
            trainer = Trainer(dataset, backbone, config, run_dir, training_set, progress)
            if not method.trainable:
                trainer.write_weights()
                return run_dir
            if resume and (run_dir / RESUME_STATE).exists():
                trainer.load_resume_state()
            trainer.fit(progress=progress)
    except MedpromptError:
        if not resume:
            discard_run(run_dir, made_folder)
        raise
    return run_dir


def discard_run(run_dir: Path, made_folder: bool) -> None:
    """Remove what a new run wrote before it failed (a collapse, a refused input), but its epoch log, which says
    what happened: nothing is left to resume, and the corrected command must not be refused as "already holds a
    run". A folder the run made, left empty, goes too."""
    for name in (CONFIG, BOXES, RESUME_STATE, WEIGHTS):
        (run_dir / name).unlink(missing_ok=True)
    if made_folder and not (run_dir / LOG).exists():
        (run_dir / LOCK).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            run_dir.rmdir()


def with_start_box(train_cfg: dict[str, Any], training_set: TrainingSet, backbone: Backbone,
                   image_size: tuple[int, int]) -> dict[str, Any]:
    """`train_cfg` with its `start_box` for `prompt_offset: training_box`: the training boxes' median, coordinate
    by coordinate, in the backbone's input frame, where the structure typically lies (one given, or recorded by a
    run being resumed, is kept)."""
    if train_cfg["prompt_offset"] != "training_box" or train_cfg.get("start_box") is not None:
        return train_cfg
    boxes = np.concatenate([training_set.boxes[s] for s in training_set.slice_ids]).astype(np.float32)
    median = backbone.spec.boxes_to_input(torch.from_numpy(np.median(boxes, axis=0, keepdims=True)), image_size)
    return {**train_cfg, "start_box": [round(float(v), 1) for v in median[0]]}


def load_train_config(method: str | None = None, path: str | os.PathLike | None = None,
                      overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """configs/train.yaml, then the method's configs/methods/NAME.yaml, then the user's file and overrides.

    The method is `method` (`--method`), else the one the file or the overrides name, else the default.
    """
    name = method or load_config("train", path, overrides).get("method") or DEFAULT_METHOD
    if not isinstance(name, str) or name not in available_methods():
        raise MedpromptError(f"--method {name}: unknown; available: {', '.join(available_methods())}")
    config = merge(read_yaml(bundled_config_path("train")), read_yaml(bundled_config_path(f"methods/{name}")))
    if path is not None:
        config = merge(config, read_yaml(user_config_path(path)))
    return {**apply_overrides(config, overrides), "method": name}


def resumed_train_config(run_dir: str | os.PathLike, path: str | os.PathLike | None = None,
                         overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The training settings a run recorded, changed only by what the user gives again."""
    recorded = Path(run_dir) / CONFIG
    if not recorded.is_file():
        raise MedpromptError(f"{run_dir}: nothing to resume (no {CONFIG})")
    config = read_yaml(recorded).get("train")
    if not isinstance(config, dict):
        raise MedpromptError(f"{recorded}: no `train` section; this run cannot be resumed")
    config.setdefault("cpu_precision", "fp32")  # runs recorded before these settings trained in fp32 on a CPU,
    config.setdefault("orientations", "none")   # on their slices as they are
    if path is not None:
        config = merge(config, read_yaml(user_config_path(path)))
    return apply_overrides(config, overrides)


def _recorded_ids(run_dir: Path) -> list[str]:
    return list(dict.fromkeys(pd.read_csv(run_dir / BOXES, dtype={"slice_id": str}).slice_id))
