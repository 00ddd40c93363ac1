"""Identical results give identical files: a weights file's bytes depend only on the weights and their
metadata (not on the process's hash seed), so two runs with the same settings can be compared by checksum.

(An embedding cache resumed with another --batch-size keeps the one it started with: see
tests/test_embedding_cache.py.)
"""

import hashlib
import os
import subprocess
import sys

import torch
from safetensors import safe_open

from helpers import backbone_args
from medprompt.cli.main import main
from medprompt.methods.run_dir import weights_bytes


def test_identical_weights_give_identical_files_in_any_process(tmp_path):
    code = ("import hashlib, torch\nfrom medprompt.methods.run_dir import weights_bytes\n"
            "data = weights_bytes({'w': torch.arange(6.0), 'b': torch.ones(2)}, "
            "{'method': 'conv_fc', 'medprompt_version': '0', 'epoch': '5', 'val_box_iou': '0.5000'})\n"
            "print(hashlib.sha256(data).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": str(seed)},
                              capture_output=True, text=True, check=True).stdout for seed in range(2)}
    assert len(digests) == 1
    path = tmp_path / "w.safetensors"
    path.write_bytes(weights_bytes({"w": torch.arange(6.0)}, {"epoch": "5", "a": "1"}))
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"a": "1", "epoch": "5"} and f.get_tensor("w").tolist() == list(range(6))


def test_two_runs_with_the_same_settings_write_the_same_bytes(embedded, tiny_checkpoint, tmp_path):
    digests = []
    for name in ("a", "b"):
        assert main(["train", str(embedded), "--out", str(tmp_path / name), "--shots", "3", "--epochs", "2",
                     *backbone_args(tiny_checkpoint)]) == 0
        digests.append(hashlib.sha256((tmp_path / name / "method.safetensors").read_bytes()).hexdigest())
    assert digests[0] == digests[1]
