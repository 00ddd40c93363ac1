"""The bundled tiny backbone: shipped weights, box-prompted quality on unseen phantoms, the pretraining command."""

import json
import shlex

import pytest
import torch

from medprompt.backbone import bundled_weights, load_backbone
from medprompt.checkpoint import sha256_file
from medprompt.config import bundled_config_path, load_config
from medprompt.pretrain import box_prompt_dice, main_pretrain

MAX_WEIGHTS_BYTES = 15 * 1024 * 1024
HELD_OUT_SEED = 7
CASES = {"acdc": 1, "camus": 4, "hc18": 4}
SCORED = {"acdc": ("RV", "LV"), "camus": ("LV", "LA"), "hc18": ("head",)}
ONE_CASE_PER_KIND = ["data.acdc_patients=1", "data.camus_views=1", "data.hc18_images=1", "evaluation.cases=1"]


@pytest.fixture(scope="module")
def tiny():
    if bundled_weights("medprompt_tiny") is None:
        pytest.fail("medprompt/weights/medprompt_tiny.safetensors is missing; run `medprompt pretrain-backbone`")
    return load_backbone()


def test_bundled_weights_are_small_and_load_as_fp32(tiny):
    path = bundled_weights("medprompt_tiny")
    assert path.stat().st_size <= MAX_WEIGHTS_BYTES
    assert tiny.backbone_id == "medprompt_tiny"
    assert all(p.dtype == torch.float32 for p in tiny.parameters())
    assert tiny.encode(torch.zeros(2, 256, 256)).shape == (2, 256, 64, 64)


@pytest.mark.parametrize("kind", ["acdc", "camus", "hc18"])
def test_box_prompted_dice_on_unseen_phantoms(tiny, kind):
    scores = box_prompt_dice(tiny, kind, seed=HELD_OUT_SEED, cases=CASES[kind], min_area=100)
    for structure in SCORED[kind]:
        assert scores[structure] >= 0.90, (kind, scores)


def test_pretrain_runs_and_writes_a_loadable_backbone(tmp_path):
    overrides = ONE_CASE_PER_KIND + [
        "training.steps=2", "training.batch_size=2", "training.prompts_per_image=1", "training.warmup_steps=1",
        "training.bf16=true",
    ]
    out = main_pretrain(tmp_path / "tiny.safetensors", None, overrides, progress=False)
    backbone = load_backbone("medprompt_tiny", out)
    assert backbone.encode(torch.zeros(1, 64, 64)).shape == (1, 256, 64, 64)
    provenance = json.loads(out.with_suffix(".json").read_text())
    assert provenance["config"]["training"]["steps"] == 2
    assert set(provenance["box_prompted_dice_held_out"]) == {"acdc", "camus", "hc18"}
    assert not list(tmp_path.glob("*.partial"))


def test_pretrain_from_init_weights_starts_from_them(tmp_path):
    shipped_path = bundled_weights("medprompt_tiny")
    overrides = ONE_CASE_PER_KIND + [
        "training.steps=1", "training.batch_size=1", "training.prompts_per_image=1", "training.warmup_steps=1",
        "training.lr=0", f"init={shipped_path}",
    ]
    out = main_pretrain(tmp_path / "tuned.safetensors", None, overrides, progress=False)
    tuned, shipped = load_backbone("medprompt_tiny", out).state_dict(), load_backbone().state_dict()
    assert tuned.keys() == shipped.keys()
    assert all(torch.equal(tuned[k], shipped[k]) for k in shipped)
    provenance = json.loads(out.with_suffix(".json").read_text())
    assert provenance["init_sha256"] == sha256_file(shipped_path)
    assert provenance["init_provenance"] == json.loads(shipped_path.with_suffix(".json").read_text())
    assert f"init={shipped_path}" in shlex.split(provenance["command"])


def recipe(config: dict) -> dict:
    """A pretraining config without what belongs to one run rather than to the recipe."""
    return {k: v for k, v in config.items() if k not in ("init", "threads")}


def test_shipped_weights_record_the_two_stage_recipe_of_the_repo():
    shipped = json.loads(bundled_weights("medprompt_tiny").with_suffix(".json").read_text())
    stage1 = shipped["init_provenance"]
    refine = load_config("pretrain_backbone", bundled_config_path("pretrain_backbone_refine"))
    assert refine["training"]["lr"] == 2e-4 and refine["init"] == "medprompt_tiny_stage1.safetensors"
    assert recipe(shipped["config"]) == recipe(refine)
    assert recipe(stage1["config"]) == recipe(load_config("pretrain_backbone"))
    assert "init_sha256" not in stage1, "the first stage starts from a random initialisation"
    assert shipped["init_sha256"] != sha256_file(bundled_weights("medprompt_tiny"))
