"""Collapse detection and recovery: hand-computed box fills, and runs whose predictions go empty."""

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from helpers import interrupt_on_call
from medprompt.common.config import load_config
from medprompt.common.errors import MedpromptError
from medprompt.training.collapse import EMPTY, FULL, HEALTHY, CollapseConfig, box_fill, classify
from medprompt.training.run import train
from medprompt.training.trainer import Trainer
from tiny_backbone import BOX_SUPERVISION, NO_COLLAPSE_CHECK


def test_box_fill_on_a_hand_built_case():
    logits = torch.full((1, 1, 10, 10), -5.0)
    logits[0, 0, 2:4, 2:6] = 5.0  # 8 of the 16 box pixels
    logits[0, 0, 8:10, 0:5] = 5.0  # 10 of the 84 pixels outside
    fill_in, fill_out = box_fill(logits, [np.array([[2, 2, 5, 5]])])
    assert fill_in[0] == pytest.approx(0.5) and fill_out[0] == pytest.approx(10 / 84)


def test_classify_thresholds():
    config = CollapseConfig()
    assert classify(0.01, 0.0, config) == EMPTY
    assert classify(0.9, 0.95, config) == FULL
    assert classify(0.7, 0.02, config) == HEALTHY
    # a mask beside the boxes (LiteMedSAM's whole-image prompt on ACDC: box fill 0.004, outside 0.132) is not the
    # empty minimum: the box losses still move it, so a one-epoch conv_fc run ends with a model
    assert classify(0.004, 0.132, config) == HEALTHY


def collapse_at(monkeypatch, epochs: set[int], visits: int = 1):
    """Make the first `visits` runs of the given (0-based) epochs report empty predictions, all others full boxes."""
    original = Trainer.step
    seen: dict[int, int] = {}

    def run_epoch(self, bar):
        seen[self.epoch] = seen.get(self.epoch, 0) + 1
        return original_run_epoch(self, bar)

    def patched_step(self, batch, index):
        terms, fill_in, fill_out = original(self, batch, index)
        collapsed = self.epoch in epochs and seen[self.epoch] <= visits
        return terms, np.full_like(fill_in, 0.0 if collapsed else 1.0), np.zeros_like(fill_out)

    original_run_epoch = Trainer.run_epoch
    monkeypatch.setattr(Trainer, "run_epoch", run_epoch)
    monkeypatch.setattr(Trainer, "step", patched_step)


def test_a_collapse_starts_again_from_a_new_initialisation(setup, tmp_path, monkeypatch):
    dataset, backbone = setup
    collapse_at(monkeypatch, {2, 3})  # epochs 3 and 4 empty the first time: a collapse with patience 2
    cfg = load_config("train", overrides=[BOX_SUPERVISION, "epochs=6", "shots=4", "collapse.patience=2"])
    run = train(dataset, backbone, cfg, tmp_path / "run", progress=False)
    log = pd.read_csv(run / "train_log.csv")
    assert list(log.epoch) == [1, 2, 3, 4, 1, 2, 3, 4, 5, 6]
    assert log.state.iloc[2] == "empty" and log.state.iloc[3] == "empty: restarted from initialisation 1"
    assert (log.state.iloc[4:] == "healthy").all() and log.lr.iloc[4] == pytest.approx(1e-3)
    assert log.loss.iloc[4] != pytest.approx(log.loss.iloc[0])  # another initialisation, same first batch
    assert (run / "method.safetensors").exists()


def test_resume_after_a_restart_gives_the_same_weights(setup, tmp_path, monkeypatch):
    dataset, backbone = setup
    cfg = load_config("train", overrides=[BOX_SUPERVISION, "epochs=4", "shots=4", "collapse.patience=1"])
    collapse_at(monkeypatch, {1})
    straight = train(dataset, backbone, cfg, tmp_path / "straight", progress=False)
    monkeypatch.undo()
    collapse_at(monkeypatch, {1})
    restore = interrupt_on_call(monkeypatch, Trainer, "run_epoch", 5)  # the restarted run's third epoch
    with pytest.raises(KeyboardInterrupt):
        train(dataset, backbone, cfg, tmp_path / "resumed", progress=False)
    restore()
    train(dataset, backbone, cfg, tmp_path / "resumed", resume=True, progress=False)
    a = load_file(str(straight / "method.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "method.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert list(pd.read_csv(tmp_path / "resumed" / "train_log.csv").epoch) == [1, 2, 1, 2, 3, 4]


def test_a_run_that_keeps_collapsing_writes_no_model(setup, tmp_path, monkeypatch):
    dataset, backbone = setup
    collapse_at(monkeypatch, {0}, visits=10)
    cfg = load_config("train", overrides=[BOX_SUPERVISION, "epochs=3", "shots=4", "collapse.max_recoveries=2", "collapse.patience=1"])
    with pytest.raises(MedpromptError, match="collapsed \\(empty: box fill 0.000.*3 times; no model written"):
        train(dataset, backbone, cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "method.safetensors").exists()


def test_the_best_epoch_by_held_out_boxes_is_written(setup, tmp_path, monkeypatch):
    from medprompt.training.selection import BoxSelector

    dataset, backbone = setup
    scores = iter([0.2, 0.9, 0.5, 0.4, 0.3])
    monkeypatch.setattr(BoxSelector, "score", lambda self, method: next(scores))
    cfg = load_config("train", overrides=[BOX_SUPERVISION, "epochs=6", "shots=4", "selection.every=1", "selection.after=0.2",
                                          NO_COLLAPSE_CHECK])
    run = train(dataset, backbone, cfg, tmp_path / "run", progress=False)
    log = pd.read_csv(run / "train_log.csv")
    assert log.val_box_iou.tolist()[1:] == [0.2, 0.9, 0.5, 0.4, 0.3]  # from 0.2 x 6 epochs on
    assert np.isnan(log.val_box_iou.iloc[0])
    with safe_open(str(run / "method.safetensors"), "pt") as f:
        assert f.metadata()["epoch"] == "3" and f.metadata()["val_box_iou"] == "0.9000"
        written = {k: f.get_tensor(k) for k in f.keys()}
    state = torch.load(run / "resume_state.pt", weights_only=True)
    assert all(torch.equal(written[k], v) for k, v in state["best"]["state"].items())
    assert not all(torch.equal(written[k], v) for k, v in state["method"].items())  # not the last epoch's


def test_a_real_collapse_is_never_written_silently(setup, tmp_path):
    """The random tiny backbone's predictions die out within a few epochs: the run must say so, not write a model."""
    dataset, backbone = setup
    cfg = load_config("train", overrides=[BOX_SUPERVISION, "epochs=6", "shots=4", "collapse.max_recoveries=1", "collapse.patience=2"])
    with pytest.raises(MedpromptError, match="training collapsed \\(empty"):
        train(dataset, backbone, cfg, tmp_path / "run", progress=False)
    log = pd.read_csv(tmp_path / "run" / "train_log.csv")
    assert log.box_fill.iloc[0] > 0.05 and not (tmp_path / "run" / "method.safetensors").exists()
