"""Verbs run by `torchrun --nproc_per_node 2` on the CPU (Gloo) with the random tiny backbone: what the group
writes equals what one process writes, and a group with a member killed mid-way leaves a state that resumes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from helpers import tiny_backbone_args
from medprompt.backbones.embedding_cache import cache_path
from medprompt.data.volume_io import read_volume

TESTS = Path(__file__).resolve().parent
COMMAND_LINE = str(TESTS / "medprompt_with_tiny_backbone.py")


def run_group(args: list[str], processes: int = 2, die: str | None = None) -> subprocess.CompletedProcess:
    """The test command line under torchrun (`processes` members on the CPU), or as one process when 1; with
    `die` (RANK:N) that member dies at its N+1-th encoder pass."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("MEDPROMPT_TEST_DIE", None)
    if die:
        env["MEDPROMPT_TEST_DIE"] = die
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] \
        if processes > 1 else [sys.executable]
    return subprocess.run([*launcher, COMMAND_LINE, *args], capture_output=True, encoding="utf-8", env=env)


def cache_content(dataset: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    with h5py.File(cache_path(dataset, "tiny_test"), "r") as f:
        return f["embeddings"][:], f["written"][:], dict(f.attrs)


def test_a_group_writes_the_cache_one_process_writes(synthetic_dataset, tiny_checkpoint, tmp_path):
    alone, group = tmp_path / "alone", tmp_path / "group"
    shutil.copytree(synthetic_dataset, alone)
    shutil.copytree(synthetic_dataset, group)
    assert run_group(["embed", str(alone), *tiny_backbone_args(tiny_checkpoint)], processes=1).returncode == 0
    result = run_group(["embed", str(group), *tiny_backbone_args(tiny_checkpoint)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 of 2" in result.stderr and "rank 1 of 2" in result.stderr
    assert result.stdout.count("embeddings of 20 slices") == 1  # printed once, by the first member
    (embeddings, written, attrs), (expected, _, expected_attrs) = cache_content(group), cache_content(alone)
    assert np.array_equal(embeddings, expected) and written.all()
    assert attrs == expected_attrs
    assert sorted(p.name for p in (group / "embeddings").iterdir()) == ["tiny_test.h5"]


def test_a_group_with_a_killed_member_leaves_a_cache_that_embed_finishes(synthetic_dataset, tiny_checkpoint,
                                                                         tmp_path):
    alone, group = tmp_path / "alone", tmp_path / "group"
    shutil.copytree(synthetic_dataset, alone)
    shutil.copytree(synthetic_dataset, group)
    assert run_group(["embed", str(alone), *tiny_backbone_args(tiny_checkpoint)], processes=1).returncode == 0
    killed = run_group(["embed", str(group), *tiny_backbone_args(tiny_checkpoint)], die="1:3")
    assert killed.returncode != 0
    final = cache_path(group, "tiny_test")
    assert not final.exists()
    assert len(list(final.parent.glob("tiny_test.h5.partial.batches/*.npy"))) >= 3  # rank 1's finished batches
    again = run_group(["embed", str(group), *tiny_backbone_args(tiny_checkpoint)])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(rank 1 of 2): 100%" in again.stderr
    assert np.array_equal(cache_content(group)[0], cache_content(alone)[0])
    assert sorted(p.name for p in final.parent.iterdir()) == ["tiny_test.h5"]


def prediction_content(folder: Path) -> dict[str, np.ndarray]:
    """What `predict` published in `folder`: each listed output's voxels (the predictions file's masks)."""
    content = {}
    for name in (folder / "predict_outputs.txt").read_text().split():
        if name.endswith(".h5"):
            with h5py.File(folder / name, "r") as f:
                content[name] = f["mask"][:]
        else:
            content[name] = read_volume(folder / name)[0]
    return content


def test_a_group_predicts_a_dataset_and_files_as_one_process_does(acdc_run, tmp_path):
    files = sorted(acdc_run.raw.glob("training/*/*_frame??.nii.gz"))[:3]
    assert len(files) == 3
    for inputs, name in (([acdc_run.dataset], "dataset"), (files, "files")):
        alone, group = tmp_path / f"alone_{name}", tmp_path / f"group_{name}"
        args = ["predict", str(acdc_run.run), *map(str, inputs)]
        assert run_group([*args, "--out", str(alone)], processes=1).returncode == 0
        result = run_group([*args, "--out", str(group)])
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.count("outputs in") == 1
        if name == "dataset":
            assert "predict (rank 1 of 2)" in result.stderr
        expected, content = prediction_content(alone), prediction_content(group)
        assert list(content) == list(expected) and len(content) >= 3
        assert all(np.array_equal(content[key], expected[key]) for key in expected)
        assert not (group / ".predict_running").exists()
