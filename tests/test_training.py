"""Training from boxes: few-shot subsets, learning, checkpoints and exact resumption."""

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from helpers import interrupt_on_call
from medprompt.common.config import load_config
from medprompt.common.errors import MedpromptError
from medprompt.data.boxes import select_training_set
from medprompt.training.recipe import TrainConfig, resumed_train_config
from medprompt.training.run import train
from medprompt.training.trainer import Trainer
from tiny_backbone import BOX_SUPERVISION, NO_COLLAPSE_CHECK


def config(**overrides):
    return load_config("train", overrides=[NO_COLLAPSE_CHECK, BOX_SUPERVISION, *(f"{k}={v}" for k, v in overrides.items())])


def test_paper_recipe_is_the_default():
    cfg = load_config("train")
    assert (cfg["lr"], cfg["weight_decay"], cfg["batch_size"], cfg["epochs"], cfg["lr_step_at"], cfg["lr_gamma"]) == (
        1e-3, 1e-4, 4, 100, 0.5, 0.1)
    assert cfg["loss"] == {"band_width": 5, "t": 5.0, "size_bounds": [0.5, 0.9], "w_outside": 1.0,
                           "w_tightness": 1e-4, "w_size": 1e-2}


def test_few_shot_subset_is_seeded_and_only_train_slices_with_target(setup):
    dataset, _ = setup
    a = select_training_set(dataset, config(shots=3, seed=0))
    b = select_training_set(dataset, config(shots=3, seed=0))
    c = select_training_set(dataset, config(shots=3, seed=5))
    assert a.slice_ids == b.slice_ids and len(a.slice_ids) == 3
    assert a.slice_ids != c.slice_ids
    rows = dataset.manifest.set_index("slice_id").loc[a.slice_ids]
    assert (rows.split == "train").all() and rows.has_target.all()
    with pytest.raises(MedpromptError, match="--shots 50: the train split of .* has only 9 slices"):
        select_training_set(dataset, config(shots=50))


def test_training_learns_and_writes_the_run(setup, tmp_path):
    dataset, backbone = setup
    run = train(dataset, backbone, config(epochs=4, shots=4), tmp_path / "run", progress=False)
    log = pd.read_csv(run / "train_log.csv")
    assert list(log.epoch) == [1, 2, 3, 4]
    assert log.loss.iloc[-1] < log.loss.iloc[0]
    assert list(log.lr) == [1e-3] * 2 + [1e-4] * 2  # lr x0.1 after half the epochs
    boxes = pd.read_csv(run / "train_boxes.csv")
    assert boxes.slice_id.nunique() == 4
    assert len(load_file(str(run / "method.safetensors"))) == 10  # 8 weights and biases, 2 offset buffers
    with pytest.raises(MedpromptError, match="already holds a run"):
        train(dataset, backbone, config(epochs=4, shots=4), run, progress=False)


def test_max_steps_shortens_the_schedule_and_keeps_its_shape(setup, tmp_path):
    dataset, backbone = setup  # 5 shots, 2 a step: 3 steps an epoch, so 10 steps are 3 of the 8 epochs
    run = train(dataset, backbone, config(epochs=8, shots=5, batch_size=2, max_steps=10), tmp_path / "run",
                progress=False)
    log = pd.read_csv(run / "train_log.csv")
    assert list(log.epoch) == [1, 2, 3]
    assert list(log.lr) == [1e-3] * 2 + [1e-4]  # the lr step at half of the 3 epochs, rounded
    assert TrainConfig.from_mapping(config(epochs=8, batch_size=2, max_steps=10)).epochs_for(2) == 8


def test_training_computes_with_subnormals_flushed(setup, tmp_path):
    """A converging model's gradients fill with subnormal floats, on which x86 arithmetic is ~50x slower."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")
    assert torch.tensor([1e-39]).mul(1.0).item() > 0
    dataset, backbone = setup
    train(dataset, backbone, config(epochs=1, shots=2), tmp_path / "run", progress=False)
    assert torch.tensor([1e-39]).mul(1.0).item() == 0.0


def test_resume_gives_the_same_weights(setup, tmp_path, monkeypatch):
    dataset, backbone = setup
    cfg = config(epochs=4, shots=5, seed=2)
    straight = train(dataset, backbone, cfg, tmp_path / "straight", progress=False)

    restore = interrupt_on_call(monkeypatch, Trainer, "step", 6)  # during epoch 3 (2 steps per epoch)
    with pytest.raises(KeyboardInterrupt):
        train(dataset, backbone, cfg, tmp_path / "resumed", progress=False)
    assert not (tmp_path / "resumed" / "method.safetensors").exists()
    assert len(pd.read_csv(tmp_path / "resumed" / "train_log.csv")) == 2
    restore()
    train(dataset, backbone, cfg, tmp_path / "resumed", resume=True, progress=False)

    a = load_file(str(straight / "method.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "method.safetensors"))
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_resume_refuses_other_settings(setup, tmp_path):
    dataset, backbone = setup
    train(dataset, backbone, config(epochs=1, shots=2), tmp_path / "run", progress=False)
    with pytest.raises(MedpromptError, match="cannot resume, train.shots: recorded 2, now 3"):
        train(dataset, backbone, config(epochs=1, shots=3), tmp_path / "run", resume=True, progress=False)


def test_user_boxes_define_the_training_set(setup, tmp_path):
    dataset, backbone = setup
    csv = tmp_path / "boxes.csv"
    csv.write_text("slice_id,x_min,y_min,x_max,y_max\ncase03_s00,40,40,50,50\ncase03_s00,10,10,30,30\n"
                   "case04_s01,5,6,20,21\ncase03_s00,10,10,30,30\n")  # one box given twice
    with pytest.warns(UserWarning, match="boxes.csv: 1 row repeats a box given earlier for the same slice"):
        chosen = select_training_set(dataset, config(), csv)
    assert chosen.slice_ids == ["case03_s00", "case04_s01"]
    assert chosen.boxes["case03_s00"].tolist() == [[10, 10, 30, 30], [40, 40, 50, 50]]


def test_a_run_recorded_before_cpu_precision_resumes_in_fp32(tmp_path):
    import yaml

    recorded = load_config("train")
    del recorded["cpu_precision"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"train": recorded}))
    assert resumed_train_config(tmp_path)["cpu_precision"] == "fp32"
    assert load_config("train")["cpu_precision"] == "fp32"


def test_a_run_starts_from_the_backbones_prompt_for_the_median_training_box(setup, tmp_path):
    dataset, backbone = setup
    boxes = tmp_path / "boxes.csv"  # slice pixels of 64x64 slices; the tiny backbone's frame is 256: x4
    boxes.write_text("slice_id,x_min,y_min,x_max,y_max\ncase00_s00,10,20,30,40\ncase00_s01,12,22,36,44\n"
                     "case01_s00,14,18,32,48\n")
    cfg = config(epochs=1, prompt_offset="training_box")
    run = train(dataset, backbone, cfg, tmp_path / "run", boxes_csv=boxes, progress=False)
    recorded = resumed_train_config(run)
    assert recorded["start_box"] == [48.0, 80.0, 128.0, 176.0]  # the median (12, 20, 32, 44), x4
    state = load_file(str(run / "method.safetensors"))
    sparse, _ = backbone.embed_boxes(np.array([[12.0, 20.0, 32.0, 44.0]]), (64, 64))
    assert np.allclose(state["module.offset_sparse"].numpy(), sparse.numpy(), atol=1e-6)
    assert resumed_train_config(train(dataset, backbone, recorded, run, resume=True, progress=False)) == recorded
    whole = train(dataset, backbone, config(epochs=1, prompt_offset="whole_image_box"), tmp_path / "whole",
                  boxes_csv=boxes, progress=False)
    assert resumed_train_config(whole).get("start_box") is None
