"""The encoder's inference engines: agreement with PyTorch, the export made once and rebuilt when damaged, the
choice `auto` makes, and embedding caches shared only between agreeing engines."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from helpers import SHARED_DATA, tiny_backbone_args
from medprompt.backbones import engines, load_backbone
from medprompt.backbones.embedding_cache import build_cache
from medprompt.backbones.encoder_export import ONNX_FILE, export_folder
from medprompt.backbones.engines import TOLERANCE, check_frames, resolve_engine
from medprompt.cli.main import main
from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import PreprocessedDataset
from tiny_backbone import build_tiny_vit_backbone

FP32_ENGINES = [name for name in ("onnxruntime", "openvino") if importlib.util.find_spec(name) is not None]


def real_slices() -> np.ndarray:
    """Three HC18 ultrasound images when the shared samples are here, else the check images' own field."""
    paths = sorted((SHARED_DATA / "HC18" / "training_set").glob("*_HC.png"))[:3]
    if not paths:
        return np.stack([np.linspace(0, 255, 180 * 200).reshape(180, 200)] * 3)
    return np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).astype(np.float32) for p in paths])


@pytest.fixture(scope="module")
def tiny_vit_checkpoint(tmp_path_factory):
    """LiteMedSAM's encoder architecture (TinyViT, windowed attention), random weights, saved as safetensors."""
    path = tmp_path_factory.mktemp("weights") / "tiny_vit.safetensors"
    save_file({k: v.contiguous() for k, v in build_tiny_vit_backbone(seed=1).state_dict().items()}, str(path))
    return path


@pytest.mark.parametrize("name", FP32_ENGINES)
def test_lite_medsam_embeddings_of_every_fp32_engine_match_pytorch(name):
    backbone = load_backbone(engine="torch")
    slices = real_slices()
    expected = torch.cat([backbone.encode(s[None]) for s in slices])
    backbone.use_engine(name)
    got = torch.cat([backbone.encode(s[None]) for s in slices])
    assert backbone.engine.name == name
    assert got.shape == (3, 256, 64, 64)
    assert float((got - expected).abs().max()) <= TOLERANCE
    assert backbone.engine.agrees


def test_auto_takes_the_fastest_engine_that_agrees(monkeypatch, tiny_vit_checkpoint):
    backbone = load_backbone("tiny_vit_test", tiny_vit_checkpoint)
    measured = {"torch": (0.0, 1.0), "onnxruntime": (2e-3, 0.2), "openvino": (5e-6, 0.5)}
    monkeypatch.setattr(engines, "measurements", lambda b, kinds: {
        kind.name: {"max_diff": measured[kind.name][0], "seconds_per_slice": measured[kind.name][1]} for kind in kinds})
    monkeypatch.setattr(engines.EngineKind, "installed", lambda self: True)
    chosen = resolve_engine(backbone, "auto")
    assert (chosen.name, chosen.max_diff) == ("openvino", 5e-6)  # onnxruntime is faster but disagrees
    measured["openvino"] = (5e-6, 3.0)
    assert resolve_engine(backbone, "auto").name == "torch"


@pytest.mark.skipif("onnxruntime" not in FP32_ENGINES, reason="onnxruntime not installed")
def test_the_export_is_made_once_and_a_damaged_one_is_rebuilt(tiny_vit_checkpoint):
    backbone = load_backbone("tiny_vit_test", tiny_vit_checkpoint, engine="onnxruntime")
    frames = check_frames(backbone, 2)
    expected = backbone.image_encoder(frames)
    assert float((backbone.engine.run(frames) - expected).abs().max()) <= TOLERANCE
    path = export_folder(backbone) / ONNX_FILE
    stamp = path.stat().st_mtime_ns
    again = load_backbone("tiny_vit_test", tiny_vit_checkpoint, engine="onnxruntime")
    assert again.engine.name == "onnxruntime" and path.stat().st_mtime_ns == stamp
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    damaged = load_backbone("tiny_vit_test", tiny_vit_checkpoint, engine="onnxruntime")
    with pytest.warns(UserWarning, match="damaged"):
        engine = damaged.engine
    assert float((engine.run(frames) - expected).abs().max()) <= TOLERANCE


def test_a_cache_is_shared_by_agreeing_engines_only(dataset_copy, tiny_checkpoint, tmp_path):
    if "openvino" not in FP32_ENGINES:
        pytest.skip("openvino not installed")
    other = tmp_path / "bf16"
    shutil.copytree(dataset_copy, other)
    dataset = PreprocessedDataset(dataset_copy)
    made_by_torch = build_cache(dataset, load_backbone("tiny_test", tiny_checkpoint, engine="torch"), progress=False)
    assert build_cache(dataset, load_backbone("tiny_test", tiny_checkpoint, engine="openvino"), progress=False) == made_by_torch
    bf16 = load_backbone("tiny_test", tiny_checkpoint, engine="openvino-bf16")
    made_in_bf16 = build_cache(PreprocessedDataset(other), bf16, progress=False)
    reused_by_torch = lambda: build_cache(PreprocessedDataset(other),  # noqa: E731
                                          load_backbone("tiny_test", tiny_checkpoint, engine="torch"), progress=False)
    if bf16.engine.max_diff > TOLERANCE:  # a CPU with bf16 arithmetic (AVX-512 BF16, AMX)
        with pytest.raises(MedpromptError, match="encoded by the openvino-bf16 engine.*--engine openvino-bf16"):
            reused_by_torch()
    else:  # without it OpenVINO computes in fp32: the engines agree, so the cache is shared
        assert reused_by_torch() == made_in_bf16


def test_an_engine_that_is_not_installed_is_named_with_its_install(monkeypatch, tiny_checkpoint):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    backbone = load_backbone("tiny_test", tiny_checkpoint, engine="onnxruntime")
    with pytest.raises(MedpromptError, match="--engine onnxruntime: the onnxruntime package is not installed"):
        backbone.encode(np.zeros((1, 64, 64), dtype=np.float32))
    with pytest.raises(MedpromptError, match="--engine 'fast': unknown"):
        backbone.use_engine("fast")


def test_backbones_bench_prints_every_engine_as_a_ratio_to_pytorch(capsys, tiny_checkpoint):
    assert main(["backbones", "--bench", "2", *tiny_backbone_args(tiny_checkpoint)]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(rows) == {"torch", *FP32_ENGINES, *(["openvino-bf16"] if "openvino" in FP32_ENGINES else [])}
    assert " 1.00x" in rows["torch"]
    assert sum("<- auto" in line for line in rows.values()) == 1


def test_importing_the_package_exports_nothing(tmp_path):
    env = {**os.environ, "MEDPROMPT_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-c", "import medprompt.backbones, medprompt.cli.main"], check=True, env=env)
    assert not (tmp_path / "cache").exists()
