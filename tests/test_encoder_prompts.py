"""PTSAM's deep visual prompts in the image encoder: learned tokens that every window of an attention block
attends to, trained with the encoder in the loop on the slices, saved, loaded, resumed and predicted with."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import interrupt_on_call
from medprompt.backbones import load_backbone
from medprompt.backbones.lite_medsam import build_lite_medsam
from medprompt.backbones.tiny_vit import WindowAttention
from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import PreprocessedDataset
from medprompt.inference.segment import predict_dataset
from medprompt.inference.store import read_predictions
from medprompt.methods import Slices, build_method, method_class
from medprompt.methods.run_dir import WEIGHTS, load_trained
from medprompt.training.recipe import load_train_config
from medprompt.training.run import train
from medprompt.training.trainer import Trainer
from tiny_backbone import NO_COLLAPSE_CHECK, VIT_NAME, build_tiny_backbone, build_tiny_vit_backbone

VPT = "ptsam.encoder_vpt=2"


def config(*overrides):
    return load_train_config("ptsam", overrides=[NO_COLLAPSE_CHECK, "collapse.full_above=1", "shots=4", "epochs=2",
                                                 VPT, *overrides])


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "tiny_vit_random.safetensors"
    save_file({k: v.contiguous() for k, v in build_tiny_vit_backbone(seed=0).state_dict().items()}, str(path))
    return path


def test_prompted_attention_is_the_prompts_joined_to_every_window_then_dropped():
    torch.manual_seed(0)
    attn = WindowAttention(dim=8, num_heads=2, window=3)
    torch.nn.init.normal_(attn.attention_biases)
    windows, prompts = torch.randn(5, 9, 8), torch.randn(4, 8)
    # the literal form: every window's 9 tokens and the 4 prompts attend to each other, the prompts with no
    # positional bias, and the prompts' outputs are dropped
    tokens = torch.cat([windows, prompts.expand(5, -1, -1)], dim=1)
    q, k, v = attn.qkv(attn.norm(tokens)).view(5, 13, 2, 3, 4).permute(3, 0, 2, 1, 4)
    bias = torch.zeros(2, 13, 13)
    bias[:, :9, :9] = attn.attention_biases[:, attn.offset_index]
    weights = torch.softmax(q @ k.transpose(-1, -2) / 2.0 + bias, dim=-1)
    literal = attn.proj((weights @ v).transpose(1, 2).reshape(5, 13, 8))[:, :9]
    assert torch.allclose(attn(windows, prompts), literal, atol=1e-5)
    assert not torch.allclose(attn(windows), literal, atol=1e-2)


def test_lite_medsam_takes_eight_prompts_in_each_of_its_ten_attention_blocks():
    backbone = build_lite_medsam()
    assert backbone.encoder_prompt_dims == (128, 128, *[160] * 6, 320, 320)
    method = build_method(backbone, load_train_config("ptsam", overrides=["ptsam.encoder_vpt=8"]))
    # 8 decoder tokens of 256, and 8 tokens per block: 8 x (2 x 128 + 6 x 160 + 2 x 320) = 14,848
    assert method.parameter_count() == 8 * 256 + 14_848
    assert method.reads == method_class("ptsam").reads_from(load_train_config("ptsam", overrides=[VPT])) == ("images",)
    assert build_method(backbone, load_train_config("ptsam")).reads == ("embeddings",)


def test_the_prompts_change_the_embeddings_and_every_block_gets_a_gradient():
    backbone = build_tiny_vit_backbone(seed=0).freeze()
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (2, 40, 64), dtype=np.uint8))
    frames = backbone.spec.low_res_images(pixels)
    assert torch.allclose(backbone.encode_frames(frames, None), backbone.encode(pixels), atol=1e-5)
    method = build_method(backbone, config())
    out = method(Slices(None, frames, (40, 64)))
    out.sigmoid().mean().backward()
    assert len(method.encoder_prompts) == 5  # stages of 1, 1 and 3 attention blocks
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in method.encoder_prompts)
    assert not torch.allclose(backbone.encode_frames(frames, list(method.encoder_prompts)), backbone.encode(pixels),
                              atol=1e-3)
    with pytest.raises(ValueError, match="4 prompt tensors for 5 attention blocks"):
        backbone.encode_frames(frames, list(method.encoder_prompts)[:4])


def test_an_encoder_without_deep_prompts_is_refused_by_name_before_the_run_writes(setup, tmp_path):
    dataset, backbone = setup
    message = "ptsam.encoder_vpt=2: the tiny_test image encoder takes no deep prompts"
    with pytest.raises(MedpromptError, match=message):
        train(dataset, backbone, config(), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())
    with pytest.raises(MedpromptError, match=message):
        build_method(build_tiny_backbone(seed=0).freeze(), config())


def test_a_run_with_encoder_prompts_trains_loads_predicts_and_resumes(dataset_copy, vit_checkpoint, tmp_path,
                                                                      monkeypatch):
    # no embedding cache: the first pass encodes the slices itself; prediction's second pass encodes them too
    dataset, backbone = PreprocessedDataset(dataset_copy), load_backbone(VIT_NAME, vit_checkpoint)
    cfg = config("supervision=boxes", "epochs=3")
    torch.manual_seed(0)
    before = build_method(backbone, cfg).trainable_state()
    straight = train(dataset, backbone, cfg, tmp_path / "straight", checkpoint=vit_checkpoint, progress=False)
    saved = load_file(str(straight / WEIGHTS))
    assert set(saved) == set(before) and {"encoder_prompts.0", "encoder_prompts.4"} <= set(saved)
    assert not torch.equal(saved["encoder_prompts.0"], before["encoder_prompts.0"])
    model = load_trained(straight, backbone.device)
    predict_dataset(model, dataset.root, tmp_path / "pred", ["val"], progress=False)
    manifest, masks, _ = read_predictions(tmp_path / "pred")
    assert len(manifest) == len(masks) > 0
    restore = interrupt_on_call(monkeypatch, Trainer, "step", 2)
    with pytest.raises(KeyboardInterrupt):
        train(dataset, backbone, cfg, tmp_path / "resumed", checkpoint=vit_checkpoint, progress=False)
    restore()
    train(dataset, backbone, cfg, tmp_path / "resumed", checkpoint=vit_checkpoint, resume=True, progress=False)
    resumed = load_file(str(tmp_path / "resumed" / WEIGHTS))
    assert all(torch.equal(saved[k], resumed[k]) for k in saved)


def test_encoder_prompts_train_from_masks_on_augmented_slices(dataset_copy, vit_checkpoint, tmp_path):
    dataset, backbone = PreprocessedDataset(dataset_copy), load_backbone(VIT_NAME, vit_checkpoint)
    run = train(dataset, backbone, config("supervision=masks", "augment.enabled=true", "refine.enabled=false"),
                tmp_path / "run", checkpoint=vit_checkpoint, progress=False)
    assert (run / WEIGHTS).is_file()
