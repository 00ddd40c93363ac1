"""The box-prompted second pass: which box it prompts with, what it leaves alone, and its config."""

import numpy as np
import pytest
import torch

from medprompt.methods import build_method
from medprompt.methods.refinement import RefineConfig, prompt_box, refine
from tiny_backbone import build_tiny_backbone

SIZE = (64, 80)


@pytest.fixture
def backbone_with_recorded_prompts(monkeypatch):
    """A method on the tiny backbone, whose box-prompted pass records its boxes and answers a full logit map."""
    backbone = build_method(build_tiny_backbone(seed=0).freeze(), {"method": "conv_fc", "prompt_offset": "none"})
    calls = []

    def prompt(embeddings, boxes, image_size):
        calls.append((len(embeddings), np.asarray(boxes).tolist(), image_size))
        return torch.full((len(embeddings), 1, 256, 256), 8.0), torch.arange(len(embeddings)) / 10

    monkeypatch.setattr(backbone, "prompt_with_boxes", prompt)
    return backbone, calls


def batch_of(trainer, n: int) -> tuple:
    """The mask targets (None from boxes) and low-res boxes of the first `n` training slices."""
    targets = None if trainer.targets is None else trainer.targets[:n]
    return targets, trainer.low_res_boxes[:n]


def first_pass() -> torch.Tensor:
    """Three slices: a blob with a far 2-pixel island, nothing, a lone square."""
    probs = torch.zeros(3, *SIZE)
    probs[0, 10:30, 20:40] = 0.9  # 400 pixels
    probs[0, 60:62, 70] = 0.8     # 2 pixels: 0.005 of the blob
    probs[2, 5:8, 5:8] = 0.7
    return probs


def test_second_pass_prompts_the_box_without_small_islands_and_leaves_empty_slices_empty(backbone_with_recorded_prompts):
    method, calls = backbone_with_recorded_prompts
    out, iou = refine(method, torch.zeros(3, 256, 64, 64), first_pass(), SIZE, RefineConfig(enabled=True, min_island=0.02))
    assert calls == [(2, [[20, 10, 39, 29], [5, 5, 7, 7]], SIZE)]
    assert torch.all(out[1] == 0)
    assert torch.all(out[[0, 2]] > 0.99)
    assert iou[0] == 0.0 and torch.isnan(iou[1]) and iou[2] == pytest.approx(0.1)  # the empty slice has no estimate


def test_the_box_is_widened_by_the_margin_and_kept_on_the_slice(backbone_with_recorded_prompts):
    method, calls = backbone_with_recorded_prompts
    config = RefineConfig(enabled=True, min_island=0.02, box_margin=0.1)  # 8 pixels of the 80-pixel side
    refine(method, torch.zeros(3, 256, 64, 64), first_pass(), SIZE, config)
    assert calls == [(2, [[12, 2, 47, 37], [0, 0, 15, 15]], SIZE)]
    assert prompt_box(np.array([70, 60, 79, 63]), config, SIZE).tolist() == [62, 52, 79, 63]
    assert prompt_box(None, config, SIZE) is None
    assert prompt_box(np.array([3, 4, 5, 6]), RefineConfig(box_margin=0.0), SIZE).tolist() == [3, 4, 5, 6]


def test_islands_widen_the_box_at_min_island_zero(backbone_with_recorded_prompts):
    method, calls = backbone_with_recorded_prompts
    refine(method, torch.zeros(3, 256, 64, 64), first_pass(), SIZE, RefineConfig(enabled=True, min_island=0.0))
    assert calls[0][1][0] == [20, 10, 70, 61]


def test_disabled_or_all_empty_returns_the_first_pass(backbone_with_recorded_prompts):
    method, calls = backbone_with_recorded_prompts
    probs = first_pass()
    out, iou = refine(method, torch.zeros(3, 256, 64, 64), probs, SIZE, RefineConfig(enabled=False))
    assert out is probs and torch.isnan(iou).all() and iou.shape == (3,)
    empty = torch.full((2, *SIZE), 0.1)
    out, iou = refine(method, torch.zeros(2, 256, 64, 64), empty, SIZE, RefineConfig(enabled=True))
    assert out is empty and torch.isnan(iou).all()
    assert calls == []


def test_config_from_a_run():
    assert RefineConfig.from_train_config({}) == RefineConfig(enabled=False)
    assert RefineConfig.from_train_config({"refine": {"enabled": True, "min_island": 0.02}}) == RefineConfig(enabled=True, min_island=0.02)
    recorded = {"refine": {"enabled": True, "min_island": 0.3, "box_margin": 0.02}}
    assert RefineConfig.from_train_config(recorded) == RefineConfig(True, 0.3, 0.02)


def test_distillation_is_the_cross_entropy_against_the_second_pass_on_non_empty_slices(setup, tmp_path, monkeypatch):
    from torch.nn import functional as F

    from medprompt.common.config import load_config
    from medprompt.training.run import check_run_request
    from medprompt.training.trainer import Trainer
    from tiny_backbone import BOX_SUPERVISION, NO_COLLAPSE_CHECK

    dataset, backbone = setup
    cfg = load_config("train", overrides=["shots=2", "refine.distill=0.5", NO_COLLAPSE_CHECK, BOX_SUPERVISION])
    training_set = check_run_request(dataset, cfg, tmp_path / "run")
    trainer = Trainer(dataset, backbone, {"dataset": {"target_label": 1}, "train": cfg}, tmp_path / "run", training_set)
    low_res = torch.zeros(2, 1, 256, 256)
    low_res[0, 0, 100:140, 100:140] = 6.0  # only the first slice predicts something
    cropped = backbone.spec.crop_low_res(low_res, trainer.image_size)
    second = torch.full((1, 1, 256, 256), -2.0)
    calls = []

    def fake_second_pass(bb, embeddings, boxes, size):
        calls.append([None if b is None else b.tolist() for b in boxes])
        return [0], second, torch.tensor([0.9])

    monkeypatch.setattr("medprompt.training.trainer.second_pass", fake_second_pass)
    got = trainer.second_pass_terms(torch.zeros(2, 256, 64, 64), cropped, *batch_of(trainer, 2))["distill"]
    target = torch.sigmoid(backbone.spec.crop_low_res(second, trainer.image_size))
    expected_box = prompt_box(backbone.spec.low_res_boxes_to_slice(np.array([100, 100, 139, 139]), trainer.image_size)[0],
                              trainer.refine, trainer.image_size)
    assert calls == [[expected_box.tolist(), None]]
    assert float(got) == pytest.approx(float(F.binary_cross_entropy_with_logits(cropped[[0]], target)), rel=1e-6)
    monkeypatch.setattr("medprompt.training.trainer.second_pass", lambda *args: ([], None, None))
    assert float(trainer.second_pass_terms(torch.zeros(2, 256, 64, 64), cropped, *batch_of(trainer, 2))["distill"]) == 0.0


@pytest.mark.parametrize("supervision", ["pseudo_masks", "boxes"])
def test_second_pass_loss_is_the_supervised_loss_of_the_second_pass_and_trains_the_tuned_decoder(setup, tmp_path,
                                                                                                supervision):
    """Against the batch's targets, or its annotated boxes (not the boxes the first pass gave the second)."""
    from medprompt.training.recipe import load_train_config
    from medprompt.training.run import check_run_request
    from medprompt.training.trainer import Trainer
    from tiny_backbone import NO_COLLAPSE_CHECK

    dataset, backbone = setup
    cfg = load_train_config("sam_sp", overrides=["shots=2", "refine.distill=0", NO_COLLAPSE_CHECK,
                                                 f"supervision={supervision}"])
    training_set = check_run_request(dataset, cfg, tmp_path / "run")
    trainer = Trainer(dataset, backbone, {"dataset": {"target_label": 1}, "train": cfg}, tmp_path / "run", training_set)
    low_res = torch.zeros(2, 1, 256, 256)
    low_res[:, 0, 100:140, 100:140] = 6.0
    cropped = backbone.spec.crop_low_res(low_res, trainer.image_size)
    embeddings = trainer.inputs.embeddings[:2].float()
    terms = trainer.second_pass_terms(embeddings, cropped, *batch_of(trainer, 2))
    assert set(terms) == {"second_pass_loss"}
    box = backbone.spec.low_res_boxes_to_slice(np.array([100, 100, 139, 139]), trainer.image_size)[0]
    box = prompt_box(box, trainer.refine, trainer.image_size)
    assert trainer.refine.box_margin > 0 and trainer.supervision.name == supervision
    second, _ = trainer.method.prompt_with_boxes(embeddings, np.stack([box, box]), trainer.image_size)
    expected = trainer.supervised_loss(backbone.spec.crop_low_res(second, trainer.image_size).float(), *batch_of(trainer, 2))
    assert float(terms["second_pass_loss"].detach()) == pytest.approx(float(expected["loss"].detach()), rel=1e-5)
    terms["second_pass_loss"].backward()
    lora = [p for n, p in trainer.method.named_parameters() if "lora_b" in n]
    assert lora and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)
