"""Train a method (`medprompt.methods`) from tight boxes alone (or from masks), on cached embeddings or slices.

Cached embeddings and/or slices -> method (prompt learner and mask decoder, or a network) -> low-res logits
-> the loss of the run's supervision (`medprompt.training.supervision`: box-constraint losses, or Dice +
cross-entropy against the masks the backbone draws in the boxes, or the dataset's masks). The trainer reads
a typed recipe (`medprompt.training.recipe.TrainConfig`).
The training slices can also be shown flipped and turned (`orientations`), each
orientation embedded once when training starts. Checkpointed every epoch; `resume`
continues an interrupted run and, on the CPU, ends with the same weights as an
uninterrupted one.
Under torchrun the members of a `Group` split each batch: each runs the method on its share, the batch's
logits are joined so that every member computes the loss of the whole batch, each back-propagates the loss's
gradient into its own share, and the gradients are summed: the same step as one process with the same batch.
The main member decides collapse recoveries for all, scores the selection and writes the run folder.
A run whose predictions on its training slices stay empty (or fill the image)
starts again from a new initialisation, and fails with a message rather than
write an empty model. Every few epochs the method is
scored on held-out slices from their boxes alone; the best epoch is written.
"""

from __future__ import annotations

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
from medprompt.common.device import autocast, cpu_bf16_for, flush_subnormals
from medprompt.common.distributed import Group
from medprompt.common.errors import MedpromptError
from medprompt.data.boxes import (
    TrainingSet,
    boxes_from_dataset,
    main_box,
)
from medprompt.data.dataset import PreprocessedDataset
from medprompt.methods import Method, build_method, method_class
from medprompt.methods.orientations import ORIENTATION_SETS, add_orientations
from medprompt.methods.refinement import prompt_box, second_pass
from medprompt.methods.run_dir import LOG, RESUME_STATE, WEIGHTS, weights_bytes
from medprompt.methods.slice_inputs import dataset_slices, matching_cache, reads_for
from medprompt.training.augmentation import SliceAugmentation
from medprompt.training.collapse import HEALTHY, box_fill, classify
from medprompt.training.recipe import TrainConfig
from medprompt.training.selection import BoxSelector


class Trainer:
    """One training run: data in memory, model, optimiser, schedule, resume state, collapse recovery, selection."""

    def __init__(self, dataset: PreprocessedDataset, backbone: Backbone, config: dict[str, Any], run_dir: Path,
                 training_set: TrainingSet, progress: bool = True, group: Group = Group()):
        self.dataset, self.backbone, self.config, self.run_dir = dataset, backbone, config, run_dir
        self.group = group
        self.recipe = TrainConfig.from_mapping(config["train"])
        self.device = backbone.device
        self.cpu_bf16 = cpu_bf16_for(self.device, self.recipe.cpu_precision)
        self.image_size = tuple(dataset.shape[1:])
        self.supervision = self.recipe.supervision_strategy()
        self.refine = self.recipe.refine
        method = method_class(self.recipe.method)
        reads = training_reads(method, self.recipe)
        cache = matching_cache(dataset, backbone) if "embeddings" in reads else None
        count = len(training_set.rows) * (1 + len(ORIENTATION_SETS[self.recipe.orientations]))
        if cache is not None and not cache.fits_in_memory(count):
            raise MedpromptError(f"{cache.path}: {count} training embeddings do not fit in memory; use --shots")
        label = int(config["dataset"]["target_label"])
        masks = dataset.masks(training_set.rows) == label if self.supervision.reads_masks else None
        oriented = add_orientations(dataset_slices(dataset, backbone, training_set.rows, reads, cache), dataset,
                                    training_set.rows, [training_set.boxes[s] for s in training_set.slice_ids], masks,
                                    self.recipe.orientations, backbone, reads, progress)
        self.inputs, self.shots = oriented.slices, len(training_set.rows)
        self.epochs = self.recipe.epochs_for(self.shots)
        self.orientation_count = len(oriented.boxes) // self.shots  # the slices as they are, then turned
        self.low_res_boxes = [backbone.spec.boxes_to_low_res(b, self.image_size) for b in oriented.boxes]
        self.targets = self.supervision.targets(backbone, self.inputs, oriented.boxes, oriented.masks, self.image_size)
        self.collapse = self.recipe.collapse
        augment = self.recipe.augment
        self.augmentation = SliceAugmentation(augment, backbone.spec.low_res, backbone.spec.low_res_shape(self.image_size)) \
            if augment.enabled else None
        self.selector = self.build_selector(cache, method.reads_from(self.recipe.values)) if group.is_main else None
        self.recoveries = 0
        self.log: list[dict[str, Any]] = []
        self.start()

    def start(self) -> None:
        """A new method (initialised from seed + number of restarts, set up from the training slices when it takes
        references), optimiser and schedule, at epoch 0."""
        torch.manual_seed(self.recipe.seed + self.recoveries)
        self.method = build_method(self.backbone, dict(self.recipe.values))
        if self.method.references:
            self.method.setup(self.inputs.to(self.device), self.targets.to(self.device))
        self.epoch = self.unhealthy_epochs = 0
        self.best: dict[str, Any] = {"score": -1.0, "epoch": 0, "state": None}
        if not self.method.trainable:
            return
        self.learned = [p for p in self.method.parameters() if p.requires_grad]
        self.group.copy_from_main(self.learned)
        recipe = self.recipe
        self.optimizer = torch.optim.Adam(self.learned, lr=recipe.lr, weight_decay=recipe.weight_decay)
        step_epoch = max(1, round(self.epochs * recipe.lr_step_at))
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, [step_epoch], gamma=recipe.lr_gamma)

    def build_selector(self, cache: EmbeddingCache | None, reads: tuple[str, ...]) -> BoxSelector | None:
        """Held-out slices of the selection split with boxes from the dataset's masks; None when there are none."""
        selection = self.recipe.selection
        if selection.split is None or not self.dataset.has_masks:
            return None
        rows = self.dataset.rows(selection.split, with_target=True)
        label = int(self.config["dataset"]["target_label"])
        boxes = boxes_from_dataset(self.dataset, rows, label, self.recipe.min_target_area)
        ids = self.dataset.manifest.slice_id.to_numpy()
        rows = np.array([r for r in rows if len(boxes[ids[r]])], dtype=np.int64)[: selection.max_slices]
        if len(rows) == 0:
            return None
        low_res = [self.backbone.spec.boxes_to_low_res(boxes[ids[r]], self.image_size) for r in rows]
        held_out = dataset_slices(self.dataset, self.backbone, rows, reads, cache)
        return BoxSelector(self.backbone, held_out, low_res, self.image_size,
                           self.refine.min_island if self.refine.enabled else 0.0)

    def batches(self, epoch: int) -> list[np.ndarray]:
        """The epoch's batches of training-set positions, each training slice once (in an orientation drawn for it
        when there are several); a function of (seed, epoch) alone, so resuming repeats it."""
        rng = np.random.default_rng([self.recipe.seed, epoch])
        order = rng.permutation(self.shots)
        if self.orientation_count > 1:
            order = order + self.shots * rng.integers(0, self.orientation_count, self.shots)
        size = self.recipe.batch_size
        return [order[i : i + size] for i in range(0, len(order), size)]

    def step(self, batch: np.ndarray, index: int) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """One optimisation step on a batch of training-set positions (the epoch's `index`-th): loss terms, box
        fill and outside fill."""
        slices = self.inputs[batch].to(self.device)
        boxes = [self.low_res_boxes[i] for i in batch]
        targets = None if self.targets is None else self.targets[batch].to(self.device)
        if self.augmentation is not None:
            slices, targets, boxes = self.augmentation(slices, targets, boxes, (self.recipe.seed, self.epoch, index))
        mine = self.group.share(np.arange(len(batch)))
        own = None
        if len(mine):
            with autocast(self.device, self.cpu_bf16):
                own = self.backbone.spec.crop_low_res(self.method(slices[mine]), self.image_size).float()
        logits = own if self.group.size == 1 else self.joined(own)
        terms = self.supervised_loss(logits, targets, boxes)
        if self.refine.distill > 0 or self.refine.second_pass_loss > 0:
            for key, value in self.second_pass_terms(slices.embeddings, logits, targets, boxes).items():
                terms[key] = value
                terms["loss"] = terms["loss"] + getattr(self.refine, key) * value
        self.optimizer.zero_grad(set_to_none=True)
        self.backward(terms, own, logits, mine)
        self.optimizer.step()
        return {k: float(v.detach()) for k, v in terms.items()}, *box_fill(logits, boxes)

    def joined(self, own: torch.Tensor | None) -> torch.Tensor:
        """The whole batch's logits from every member's share, as a leaf that collects the loss's gradient."""
        whole = self.group.join(None if own is None else own.detach().cpu().numpy())
        return torch.from_numpy(whole).to(self.device).requires_grad_()

    def backward(self, terms: dict[str, torch.Tensor], own: torch.Tensor | None, logits: torch.Tensor,
                 mine: np.ndarray) -> None:
        """The gradient of the batch's loss in the learned parameters; in a group, each member back-propagates
        the joined logits' gradient into its share, and the members' gradients are summed."""
        if self.group.size == 1:
            terms["loss"].backward()
            return
        loss = terms["loss"]
        if "second_pass_loss" in terms:  # every member runs the second pass on the whole batch: count it once
            loss = loss - (1 - 1 / self.group.size) * self.refine.second_pass_loss * terms["second_pass_loss"]
        loss.backward()
        if own is not None:
            own.backward(logits.grad[torch.from_numpy(mine).to(self.device)])
        self.group.sum_gradients(self.learned)

    def supervised_loss(self, logits: torch.Tensor, targets: torch.Tensor | None,
                        boxes: list[np.ndarray]) -> dict[str, torch.Tensor]:
        """The box losses, or Dice + cross-entropy against the mask targets, of cropped low-res logits."""
        return self.supervision.loss(logits, targets, boxes)

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
            keep, second, _ = second_pass(self.method, embeddings, prompts, self.image_size)
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
        flush_subnormals()
        epochs = self.epochs
        steps_per_epoch = len(self.batches(0))
        bar = tqdm(total=epochs * steps_per_epoch, initial=self.epoch * steps_per_epoch, unit="step",
                   desc=self.group.label("train"), disable=not progress)
        while self.epoch < epochs:
            row = self.group.from_main(self.run_epoch(bar))  # the main member decides, all follow
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
        selection, epochs = self.recipe.selection, self.epochs
        return epoch == epochs or (epoch >= selection.after * epochs and epoch % selection.every == 0)

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
        if self.group.is_main:
            bar.write(f"epoch {row['epoch']}: predictions on the training slices stayed {row['state']} (box "
                      f"fill {row['box_fill']:.3f}); starting again from a new initialisation ({self.recoveries} of "
                      f"{self.collapse.max_recoveries})")
        self.start()
        bar.n = 0
        bar.refresh()

    def write_weights(self) -> None:
        """The selected epoch's weights (the last epoch's without a selection split), by the main member."""
        if not self.group.is_main:
            return
        metadata = {"method": self.recipe.method, "medprompt_version": __version__, "epoch": str(self.epoch)}
        state = self.method.trainable_state()
        if self.best["state"] is not None:
            state = self.best["state"]
            metadata.update(epoch=str(self.best["epoch"]), val_box_iou=f"{self.best['score']:.4f}")
        with atomic_path(self.run_dir / WEIGHTS) as tmp:
            tmp.write_bytes(weights_bytes({k: v.detach().cpu().contiguous() for k, v in state.items()}, metadata))

    def save_resume_state(self) -> None:
        """Resumable state and the epoch log, each replaced atomically, by the main member."""
        if not self.group.is_main:
            return
        state = {"epoch": self.epoch, "method": self.method.trainable_state(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "log": self.log, "recoveries": self.recoveries,
                 "unhealthy_epochs": self.unhealthy_epochs, "best": self.best}
        with atomic_path(self.run_dir / RESUME_STATE) as tmp:
            torch.save(state, tmp)
        self.write_log()

    def write_log(self) -> None:
        """The epoch log, replaced atomically, by the main member."""
        if not self.group.is_main:
            return
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


def training_reads(method: type[Method], recipe: TrainConfig) -> tuple[str, ...]:
    """What a run reads of its slices: the method's inputs, and the embeddings that pseudo-masks or the
    second-pass terms are drawn from."""
    refine = recipe.refine
    return reads_for(method.reads_from(recipe.values), recipe.supervision_strategy().reads_embeddings
                     or refine.distill > 0 or refine.second_pass_loss > 0)
