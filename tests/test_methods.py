"""The Method contract, for every registered method on the tiny backbone: parameters, shapes, one training step
from boxes and from masks, save / load through the run folder, and exact resumption."""

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from helpers import interrupt_on_call
from medprompt.backbones.lite_medsam import build_lite_medsam
from medprompt.common.errors import MedpromptError
from medprompt.inference.predict import predict_inputs
from medprompt.inference.segment import predict_dataset, segment_images
from medprompt.inference.store import read_predictions
from medprompt.methods import METHODS, Slices, build_method, method_class
from medprompt.methods.lora import LoRALinear
from medprompt.methods.refinement import RefineConfig
from medprompt.methods.run_dir import WEIGHTS, load_trained
from medprompt.training.mask_targets import MaskLoss, low_res_masks, pseudo_masks
from medprompt.training.recipe import load_train_config
from medprompt.training.run import train
from medprompt.training.trainer import Trainer
from tiny_backbone import NO_COLLAPSE_CHECK, build_tiny_backbone

TRAINABLE = sorted(name for name, cls in METHODS.items() if cls.trainable)
RUNS = [(name, supervision) for name in TRAINABLE for supervision in ("boxes", "pseudo_masks", "masks")
        if supervision in METHODS[name].supervisions]
SMALL = {  # the networks at a size that trains in seconds on the tiny dataset
    "unet": ["unet.channels=[4,8,16]", "unet.num_res_units=1"],
    "unetr": ["unetr.hidden_size=32", "unetr.mlp_dim=64", "unetr.num_heads=2", "unetr.feature_size=4"],
    "autosam": ["autosam.channels=[8,16]", "autosam.num_res_units=1"],
}


def config(method, *overrides):
    # random weights segment nothing: their box-prompted masks may fill the image, so no collapse check either way
    return load_train_config(method, overrides=[NO_COLLAPSE_CHECK, "collapse.full_above=1", "shots=4", "epochs=2",
                                                "batch_size=4", *SMALL.get(method, []), *overrides])


def test_parameter_counts_on_the_lite_medsam_architecture():
    model = build_lite_medsam()
    counts = {name: build_method(model, load_train_config(name)).parameter_count() for name in METHODS}
    # SAM-SP: rank r on query and value of 2 blocks x (self-attention 256->256, two cross-attentions 256->128)
    # and the final attention 256->128: r x (2 x (2x512 + 4x384) + 2x384) = r x 5,888, with r = 32.
    # The networks are MONAI's: UNet (32..512 channels, 2 residual units), UNETR (ViT-B/16 at 256x256, feature
    # size 16), and AutoSAM's CNN (two strided 3x3 convolutions 1->32->64, a UNet 64..512 -> 256 channels at the
    # embedding grid, and a 1x1 head 256x256 + 256).
    assert counts == {"conv_fc": 2_433_984, "ptsam": 8 * 256, "sam_sp": 32 * 5_888, "box_prompted": 0,
                      "persam": 0, "persam_f": 2, "unet": 6_494_716, "unetr": 87_333_809, "autosam": 7_444_815}
    assert all(p.requires_grad is False for p in model.parameters())  # the backbone stays frozen


@pytest.mark.parametrize("name", sorted(METHODS))
def test_shapes_and_the_state_saved_is_the_methods_own(name):
    backbone = build_tiny_backbone(seed=0).freeze()
    method = build_method(backbone, config(name)).eval()
    embeddings = 0.1 * torch.randn(3, 256, 64, 64)
    boxes = np.array([[10, 10, 40, 50]] * 3)
    logits, iou = method.prompt_with_boxes(embeddings, boxes, (64, 64))
    assert logits.shape == (3, 1, 256, 256) and iou.shape == (3,)
    state = method.trainable_state()
    assert not any(key.startswith("backbone.") for key in state)
    learned = {k for k, v in method.named_parameters() if v.requires_grad}
    assert bool(learned) == method.trainable and learned <= set(state)
    if method.needs_boxes:
        assert state == {} and not method.trainable
    else:
        slices = Slices(embeddings if "embeddings" in method.reads else None,
                        torch.rand(3, 1, 256, 256) if "images" in method.reads else None, (64, 64))
        assert method(slices).shape == (3, 1, 256, 256)
    with pytest.raises(ValueError, match="unexpected"):
        method.load_trainable_state({**state, "stray": torch.zeros(1)})


def test_ptsam_starts_from_the_whole_image_box_and_sam_sp_from_the_frozen_decoder():
    backbone = build_tiny_backbone(seed=0).freeze()
    torch.manual_seed(0)
    embeddings = 0.1 * torch.randn(2, 256, 64, 64)
    whole = backbone.prompt(embeddings, np.array([[0, 0, 255, 255]] * 2), (256, 256))
    with torch.no_grad():
        sam_sp = build_method(backbone, load_train_config("sam_sp"))(Slices(embeddings))  # LoRA's B starts at zero
        ptsam = build_method(backbone, load_train_config("ptsam", overrides=["ptsam.tokens=2"]))
        ptsam.tokens.copy_(backbone.whole_image_prompt()[0][0])
        tokens_only = ptsam(Slices(embeddings))
    assert torch.allclose(sam_sp, whole, atol=1e-4)
    assert torch.allclose(tokens_only, whole, atol=1e-4)
    lora = [m for m in build_method(backbone, load_train_config("sam_sp")).modules() if isinstance(m, LoRALinear)]
    assert len(lora) == 8  # query and value of the tiny decoder's 1 block x 3 attentions + its final attention


@pytest.mark.parametrize(("name", "supervision"), RUNS)
def test_one_run_trains_saves_loads_and_predicts(setup, tiny_checkpoint, tmp_path, name, supervision):
    dataset, backbone = setup
    torch.manual_seed(0)
    before = build_method(backbone, config(name)).trainable_state()
    run = train(dataset, backbone, config(name, f"supervision={supervision}"), tmp_path / "run",
                checkpoint=tiny_checkpoint, progress=False)
    saved = load_file(str(run / WEIGHTS))
    assert set(saved) == set(before)
    assert any(not torch.equal(saved[k], before[k].cpu()) for k in saved)  # something was learned
    log = pd.read_csv(run / "train_log.csv")
    assert list(log.epoch) == [1, 2] and np.isfinite(log.loss).all()
    model = load_trained(run, backbone.device)
    assert all(torch.equal(model.method.trainable_state()[k].cpu(), saved[k]) for k in saved)
    predict_dataset(model, dataset.root, tmp_path / "pred", ["val"], progress=False)
    manifest, masks, _ = read_predictions(tmp_path / "pred")
    assert len(manifest) == len(masks) > 0


@pytest.mark.parametrize("name", TRAINABLE)
def test_resume_gives_the_same_weights(setup, tmp_path, monkeypatch, name):
    dataset, backbone = setup
    cfg = config(name, "epochs=3")
    straight = load_file(str(train(dataset, backbone, cfg, tmp_path / "straight", progress=False) / WEIGHTS))
    restore = interrupt_on_call(monkeypatch, Trainer, "step", 2)  # epoch 2 (one batch of 4 per epoch)
    with pytest.raises(KeyboardInterrupt):
        train(dataset, backbone, cfg, tmp_path / "resumed", progress=False)
    restore()
    train(dataset, backbone, cfg, tmp_path / "resumed", resume=True, progress=False)
    resumed = load_file(str(tmp_path / "resumed" / WEIGHTS))
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_box_prompted_records_a_run_and_predicts_from_the_true_boxes(setup, tiny_checkpoint, tmp_path):
    dataset, backbone = setup
    run = train(dataset, backbone, config("box_prompted"), tmp_path / "run", checkpoint=tiny_checkpoint, progress=False)
    assert load_file(str(run / WEIGHTS)) == {} and not (run / "train_log.csv").exists()
    model = load_trained(run, backbone.device)
    predict_dataset(model, dataset.root, tmp_path / "pred", ["val"], progress=False)
    predict_dataset(model, dataset.root, tmp_path / "bound", ["val"], box_prompt=True, progress=False)
    assert np.array_equal(read_predictions(tmp_path / "pred")[1], read_predictions(tmp_path / "bound")[1])
    manifest = read_predictions(tmp_path / "bound")[0]
    boxed = manifest.has_target.to_numpy()  # a slice without the structure has no box, so no decoder pass
    assert boxed.any() and (~boxed).any()
    assert np.isfinite(manifest.decoder_iou[boxed]).all() and manifest.decoder_iou[~boxed].isna().all()
    with pytest.raises(MedpromptError, match="needs the ground-truth boxes"):
        segment_images(model.method, np.zeros((1, 64, 64), np.uint8), progress=False)
    image = tmp_path / "scan.png"
    image.write_bytes(b"")
    with pytest.raises(MedpromptError, match="scan.png: the run's method box_prompted prompts with the true boxes"):
        predict_inputs(run, [image], tmp_path / "files", backbone.device)
    assert not (tmp_path / "files").exists()


def test_supervision_a_method_does_not_take_or_without_masks_is_refused(setup, tmp_path):
    dataset, backbone = setup
    with pytest.raises(MedpromptError, match="--supervision masks: method box_prompted learns from boxes only"):
        train(dataset, backbone, config("box_prompted", "supervision=masks"), tmp_path / "a", progress=False)
    csv = tmp_path / "boxes.csv"
    csv.write_text("slice_id,x_min,y_min,x_max,y_max\ncase03_s00,10,10,30,30\n")
    with pytest.raises(MedpromptError, match="--supervision masks: needs the dataset's masks"):
        train(dataset, backbone, config("conv_fc", "supervision=masks", "shots=1"), tmp_path / "b", boxes_csv=csv,
              progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(MedpromptError, match="--method nope: unknown; available: autosam, box_prompted, conv_fc"):
        load_train_config("nope")
    assert method_class("ptsam").name == "ptsam"


def test_mask_loss_on_a_hand_computed_case():
    logits, targets = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    # sigmoid(0) = 0.5 everywhere: Dice loss 1 - 2*8/(8+16) per image, cross-entropy ln 2
    assert float(MaskLoss()(logits, targets)["loss"]) == pytest.approx(1 - 16 / 24 + np.log(2), rel=1e-5)
    masks = np.zeros((1, 8, 8), bool)
    masks[0, :4, :2] = True
    assert low_res_masks(masks, (2, 2))[0, 0].tolist() == [[0.5, 0.0], [0.0, 0.0]]


def test_pseudo_masks_are_the_backbones_box_prompted_answer_and_the_max_over_a_slices_boxes(monkeypatch):
    backbone = build_tiny_backbone(seed=0).freeze()
    prompted = []

    def prompt(embeddings, boxes, image_size):  # logit +8 inside the box (low-res = slice pixels x 4), -8 outside
        prompted.append(np.asarray(boxes).tolist())
        logits = torch.full((len(embeddings), 1, 256, 256), -8.0)
        for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes)):
            logits[k, 0, 4 * y0 : 4 * (y1 + 1), 4 * x0 : 4 * (x1 + 1)] = 8.0
        return logits

    monkeypatch.setattr(backbone, "prompt", prompt)
    boxes = [np.array([[0, 0, 9, 9], [20, 20, 29, 29]]), np.zeros((0, 4), np.int64), np.array([[5, 5, 14, 14]])]
    targets = pseudo_masks(backbone, torch.zeros(3, 256, 64, 64), boxes, (64, 64))
    assert prompted == [[[0, 0, 9, 9], [20, 20, 29, 29], [5, 5, 14, 14]]]  # one batch of every box
    assert targets.shape == (3, 1, 256, 256)
    high = torch.sigmoid(torch.tensor(8.0))
    assert targets[0, 0, 0, 0] == high and targets[0, 0, 100, 100] == high and targets[0, 0, 50, 50] < 0.01
    assert targets[1].max() == 0 and targets[2, 0, 30, 30] == high


def test_persam_target_is_the_mean_feature_under_the_reference_mask_and_points_follow_it():
    backbone = build_tiny_backbone(seed=0).freeze()
    method = build_method(backbone, config("persam")).eval()
    torch.manual_seed(0)
    v = torch.nn.functional.normalize(torch.randn(256), dim=0)
    reference = 0.01 * torch.randn(1, 256, 64, 64)
    reference[0, :, 10:20, 10:20] += v[:, None, None]
    mask = torch.zeros(1, 1, 256, 256)
    mask[..., 40:80, 40:80] = 1.0  # low-res pixels 40..79: grid cells 10..19
    method.setup(Slices(reference, None, (64, 64)), mask)
    expected = torch.nn.functional.normalize(reference[0, :, 10:20, 10:20].mean((1, 2)), dim=0)
    assert torch.allclose(method.target, expected, atol=1e-6)
    query = 0.01 * torch.randn(1, 256, 64, 64)
    query[0, :, 40, 50] += v   # most similar cell: row 40, column 50
    query[0, :, 5, 7] -= v     # least similar: row 5, column 7
    coords, labels = method.location_points(Slices(query, None, (64, 64)))
    assert labels.tolist() == [[1, 0]]
    (px, py), (nx, ny) = coords[0].tolist()  # input-frame pixels, 4 per grid cell here
    assert abs(px - 201.5) <= 2 and abs(py - 161.5) <= 2 and abs(nx - 29.5) <= 2 and abs(ny - 21.5) <= 2
    with pytest.raises(MedpromptError, match="reference masks are empty"):
        method.setup(Slices(reference, None, (64, 64)), torch.zeros(1, 1, 256, 256))


def test_persam_records_its_target_from_one_reference_and_predicts(setup, tiny_checkpoint, tmp_path):
    dataset, backbone = setup
    run = train(dataset, backbone, config("persam", "supervision=masks", "shots=1"), tmp_path / "run",
                checkpoint=tiny_checkpoint, progress=False)
    saved = load_file(str(run / WEIGHTS))
    assert list(saved) == ["target"] and float(saved["target"].norm()) == pytest.approx(1.0, abs=1e-5)
    assert not (run / "train_log.csv").exists()
    predict_dataset(load_trained(run, backbone.device), dataset.root, tmp_path / "pred", ["val"], progress=False)
    assert len(read_predictions(tmp_path / "pred")[1]) > 0


def test_autosam_starts_from_its_fixed_prompts():
    backbone = build_tiny_backbone(seed=0).freeze()
    slices = Slices(0.1 * torch.randn(2, 256, 64, 64), torch.rand(2, 1, 256, 256), (64, 64))
    with torch.no_grad():
        own = build_method(backbone, config("autosam", "prompt_offset=none"))(slices)  # AutoSAM's: no sparse prompt
        boxed = build_method(backbone, config("autosam"))(slices)  # the start box, before train knows it: the frame
        none = backbone.decode(slices.embeddings, torch.zeros(2, 0, 256), torch.zeros(2, 256, 64, 64))
    whole = backbone.prompt(slices.embeddings, np.array([[0, 0, 255, 255]] * 2), (256, 256))
    assert torch.allclose(own, none, atol=1e-5) and torch.allclose(boxed, whole, atol=1e-4)


def test_a_network_on_the_slices_runs_the_encoder_only_for_a_second_pass(monkeypatch):
    backbone = build_tiny_backbone(seed=0).freeze()
    method = build_method(backbone, config("unet")).eval()
    encoded = []
    encode = backbone.encode
    monkeypatch.setattr(backbone, "encode", lambda images: encoded.append(len(images)) or encode(images))
    images = (np.random.default_rng(0).random((3, 64, 48)) * 255).astype(np.uint8)
    probs = segment_images(method, images, progress=False).probs
    assert probs.shape == (3, 64, 48) and encoded == []
    segment_images(method, images, progress=False, refine_config=RefineConfig(enabled=True))
    assert encoded == [3]


def test_option_combinations_a_method_refuses_are_named_before_anything_is_written(setup, tmp_path):
    dataset, backbone = setup
    with pytest.raises(MedpromptError, match="unetr.hidden_size: 32 is not a multiple of unetr.num_heads \\(3\\)"):
        train(dataset, backbone, config("unetr", "unetr.num_heads=3"), tmp_path / "run", progress=False)
    with pytest.raises(MedpromptError, match="--supervision boxes: method persam learns from masks or pseudo_masks"):
        train(dataset, backbone, config("persam", "supervision=boxes"), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
