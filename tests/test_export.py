"""`medprompt export`: a run as a folder in the Hugging Face Hub layout that predicts what the run predicts (moved,
renamed, or as the Hub's download cache), its model card, refusals of damaged or foreign exports, and the upload
up to the Hub's API call."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.numpy import load_file

from helpers import SHARED_DATA, expect_error
from medprompt.cli.main import main
from medprompt.data.dataset import PreprocessedDataset
from medprompt.export.model_card import model_card
from medprompt.export.onnx_segmenter import OnnxSegmenter
from medprompt.inference.segment import segment_images
from medprompt.methods.run_dir import load_trained, model_folder

FILES = {"README.md", "config.json", "model.safetensors", "test_tensors.safetensors"}


def first_volume(raw: Path) -> Path:
    return sorted(raw.glob("training/patient*/patient*_frame??.nii.gz"))[0]


def card_header(folder: Path) -> dict:
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


@pytest.fixture(scope="module")
def exported(acdc_run, tiny_checkpoint, tmp_path_factory) -> Path:
    """The acdc_run's export, with the run's evaluation in its card (read-only)."""
    root = tmp_path_factory.mktemp("export")
    metrics = root / "metrics.csv"
    assert main(["evaluate", str(acdc_run.predictions), str(acdc_run.dataset), "--out", str(metrics)]) == 0
    assert main(["export", str(acdc_run.run), "--out", str(root / "lv"), "--metrics", str(metrics),
                 "--license", "cc-by-4.0"]) == 0
    return root / "lv"


@pytest.fixture(scope="module")
def lite_run(lite_acdc, tmp_path_factory) -> Path:
    """One epoch of the default recipe on LiteMedSAM from two real ACDC slices (read-only)."""
    run = tmp_path_factory.mktemp("lite_run") / "run"
    assert main(["train", str(lite_acdc), "--out", str(run), "--epochs", "1", "--shots", "2"]) == 0
    return run


def predict_volume(model: Path, volume: Path, out: Path, *options: str) -> np.ndarray:
    assert main(["predict", str(model), str(volume), "--out", str(out), *options]) == 0
    return np.asarray(nib.load(out / volume.name).dataobj)


@pytest.fixture(scope="module")
def lite_export(lite_run, tmp_path_factory) -> Path:
    """`lite_run` exported, with its ONNX segmenter as `segmenter.onnx` beside the folder (the folder may be moved)."""
    root = tmp_path_factory.mktemp("lite_export")
    assert main(["export", str(lite_run), "--out", str(root / "export"), "--onnx", str(root / "segmenter.onnx")]) == 0
    return root / "export"


REAL_SAMPLES = pytest.mark.skipif(not (SHARED_DATA / "ACDC").is_dir(), reason="the real samples (../shared/data) are absent")


@REAL_SAMPLES
def test_an_export_moved_and_renamed_predicts_the_runs_masks_bit_for_bit(lite_export, lite_run, lite_acdc, tmp_path):
    exported = tmp_path / "export"
    shutil.copytree(lite_export, exported)
    assert {p.name for p in exported.iterdir()} == FILES
    assert (exported / "model.safetensors").read_bytes() == (lite_run / "method.safetensors").read_bytes()
    for name in ("README.md", "config.json"):  # no path of this machine goes with it
        assert str(lite_run.parent) not in (exported / name).read_text()
        assert str(lite_acdc.parent) not in (exported / name).read_text()
    config = json.loads((exported / "config.json").read_text())
    assert config["library_name"] == "medprompt" and config["target"] == {"name": "LV", "label": 3}
    assert config["backbone"]["id"] == "lite_medsam" and "checkpoint" not in config["backbone"]
    moved = tmp_path / "elsewhere" / "my-lv-model"
    shutil.move(exported, moved)
    volume = sorted((lite_acdc.parent / "ACDC" / "training").glob("patient063/patient063_frame??.nii.gz"))[0]
    from_run = predict_volume(lite_run, volume, tmp_path / "from_run")
    assert (from_run == 3).sum() > 100
    np.testing.assert_array_equal(predict_volume(moved, volume, tmp_path / "from_export"), from_run)


def test_the_hubs_download_cache_of_an_export_loads_the_snapshot_refs_main_names(exported, acdc_run,
                                                                                   tiny_checkpoint, tmp_path):
    cache = tmp_path / "hub" / "models--my-lab--lv"  # models--OWNER--NAME/snapshots/<revision>/, refs/main
    shutil.copytree(exported, cache / "snapshots" / "0123abcd")
    shutil.copytree(acdc_run.run, cache / "snapshots" / "4567ef01")  # another revision: a run, not this export
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text("0123abcd\n")
    assert model_folder(cache) == cache / "snapshots" / "0123abcd"
    run = load_trained(acdc_run.run, torch.device("cpu"), tiny_checkpoint, engine="torch")
    from_cache = load_trained(cache, torch.device("cpu"), tiny_checkpoint, backbone=run.backbone)
    assert from_cache.config["train"] == run.config["train"] and from_cache.refine == run.refine
    for key, tensor in run.method.trainable_state().items():
        assert torch.equal(from_cache.method.trainable_state()[key], tensor), key


@REAL_SAMPLES
def test_the_onnx_segmenter_draws_the_masks_predict_draws_on_real_slices(lite_export, lite_run, lite_acdc):
    pytest.importorskip("onnxruntime")
    graphs = lite_export.parent / "segmenter.onnx"
    description = json.loads(graphs.with_suffix(".json").read_text())
    assert description["second_pass"] == "segmenter.second_pass.onnx" and description["slice_shape"] == [256, 256]
    dataset = PreprocessedDataset(lite_acdc)
    rows = np.flatnonzero(dataset.manifest.split == "test")
    images = dataset.images(rows)
    model = load_trained(lite_run, torch.device("cpu"), engine="torch")
    expected = segment_images(model.method, images, progress=False, refine_config=model.refine).probs > 0.5
    segmenter = OnnxSegmenter(graphs)
    got = np.stack([segmenter(image) for image in images]) > 0.5
    assert expected.sum() > 1000
    assert 2 * (got & expected).sum() / (got.sum() + expected.sum()) >= 0.999


def test_its_config_has_no_path_and_its_test_tensors_are_a_synthetic_slice(exported, acdc_run, tiny_checkpoint):
    for name in ("README.md", "config.json"):
        text = (exported / name).read_text()
        assert str(acdc_run.run.parent) not in text and str(tiny_checkpoint.parent) not in text
    tensors = load_file(str(exported / "test_tensors.safetensors"))
    assert tensors["image"].shape == (1, 96, 96) and tensors["image"].dtype == np.uint8
    assert tensors["probabilities"].shape == (1, 96, 96)
    assert 0 <= tensors["probabilities"].min() and tensors["probabilities"].max() <= 1


def test_the_model_card_declares_the_model_and_renders_the_runs_metrics(exported):
    header = card_header(exported)
    assert header["library_name"] == "medprompt" and header["license"] == "cc-by-4.0"
    assert header["pipeline_tag"] == "image-segmentation" and header["base_model"] == "tiny_test"
    assert "conv_fc" in header["tags"]
    metrics = {m["type"]: m for m in header["model-index"][0]["results"][0]["metrics"]}
    scores = pd.read_csv(exported.parent / "metrics.csv")
    with_target = scores[scores.has_target]
    assert metrics["dice"]["value"] == pytest.approx(with_target.dice.mean(), abs=1e-4)
    assert metrics["dice"]["name"] == f"Dice (2D, mean over {len(with_target)} slices with the structure)"
    body = (exported / "README.md").read_text()
    assert "Segments **LV** (label 3)" in body and f"| {metrics['dice']['name']} | {metrics['dice']['value']} |" in body


def test_the_model_card_says_when_a_step_cap_shortened_the_schedule(acdc_run):
    config = yaml.safe_load((acdc_run.run / "config.yaml").read_text())
    assert "`, 1 epochs, seed" in model_card(config, "lv", "cc-by-4.0", 2, [])
    config["train"]["max_steps"] = 1500
    assert "`, 1 epochs, at most 1500 steps, seed" in model_card(config, "lv", "cc-by-4.0", 2, [])


@pytest.mark.parametrize("damage, fragment", [
    ("weights", "model.safetensors: its sha256 differs from the one config.json records"),
    ("library", "config.json: not a medprompt model (library_name is 'transformers')"),
    ("backbone", "differs from the checkpoint this run was trained with"),
    ("json", "config.json: not readable as JSON"),
    ("two_snapshots", "a Hub cache folder with 2 snapshots and no refs/main"),
])
def test_a_damaged_or_foreign_export_is_refused_in_one_line(exported, acdc_run, tiny_checkpoint, tmp_path, capsys,
                                                            damage, fragment):
    folder = tmp_path / "lv"
    shutil.copytree(exported, folder)
    config = json.loads((folder / "config.json").read_text())
    if damage == "weights":
        data = bytearray((folder / "model.safetensors").read_bytes())
        data[-1] ^= 0xFF
        (folder / "model.safetensors").write_bytes(bytes(data))
    elif damage == "library":
        (folder / "config.json").write_text(json.dumps({**config, "library_name": "transformers"}))
    elif damage == "backbone":
        config["backbone"]["checkpoint_sha256"] = "0" * 64
        (folder / "config.json").write_text(json.dumps(config))
    elif damage == "json":
        (folder / "config.json").write_text("{")
    else:
        folder = tmp_path / "models--my-lab--lv"
        for revision in ("a1", "b2"):
            shutil.copytree(exported, folder / "snapshots" / revision)
    expect_error(capsys, ["predict", str(folder), str(first_volume(acdc_run.raw)), "--out", str(tmp_path / "out"),
                          "--checkpoint", str(tiny_checkpoint)], fragment)
    assert not (tmp_path / "out").exists()


def test_boxes_go_only_when_asked_and_an_export_never_lands_on_a_full_folder(acdc_run, tmp_path, capsys):
    assert main(["export", str(acdc_run.run), "--out", str(tmp_path / "with_boxes"), "--include-boxes"]) == 0
    assert {p.name for p in (tmp_path / "with_boxes").iterdir()} == FILES | {"train_boxes.csv"}
    expect_error(capsys, ["export", str(acdc_run.run), "--out", str(tmp_path / "with_boxes")], "not empty")
    expect_error(capsys, ["export", str(acdc_run.dataset), "--out", str(tmp_path / "x")], "not a run folder")
    expect_error(capsys, ["export", str(acdc_run.run), "--out", str(tmp_path / "x"), "--onnx", str(tmp_path / "x.pt")],
                 "name the file FILE.onnx")
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


class FakeHub:
    """Stands in for huggingface_hub's HfApi: records the calls the upload would make."""

    calls: list[tuple[str, dict]] = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", {**kwargs, "files": sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())}))


def test_push_uploads_the_checked_folder_and_without_a_token_keeps_it(acdc_run, tmp_path, capsys, monkeypatch):
    import huggingface_hub

    FakeHub.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: "hf_test")
    assert main(["export", str(acdc_run.run), "--out", str(tmp_path / "lv"), "--push", "my-lab/lv-10-boxes"]) == 0
    assert "uploaded to https://huggingface.co/my-lab/lv-10-boxes" in capsys.readouterr().out
    (create, created), (upload, uploaded) = FakeHub.calls
    assert (create, created["repo_id"], created["repo_type"], created["exist_ok"]) == ("create_repo", "my-lab/lv-10-boxes",
                                                                                      "model", True)
    assert upload == "upload_folder" and uploaded["folder_path"] == str(tmp_path / "lv")
    assert uploaded["repo_id"] == "my-lab/lv-10-boxes" and uploaded["files"] == sorted(FILES)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    expect_error(capsys, ["export", str(acdc_run.run), "--out", str(tmp_path / "kept"), "--push", "my-lab/lv"],
                 "--push: no Hugging Face token", "the export in")
    assert {p.name for p in (tmp_path / "kept").iterdir()} == FILES
    expect_error(capsys, ["export", str(acdc_run.run), "--out", str(tmp_path / "never"), "--push", "no-owner"],
                 "--push no-owner: not a Hub repository name")
    assert not (tmp_path / "never").exists()
