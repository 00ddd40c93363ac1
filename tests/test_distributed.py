"""Verbs run by `torchrun --nproc_per_node 2` on the CPU (Gloo) with the random tiny backbone: what the group
writes equals what one process writes (embed, predict, train; the benchmark's test is with the benchmark's), and
a group with a member killed mid-way leaves a state that resumes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from safetensors.numpy import load_file

from helpers import backbone_args, tiny_backbone_args
from medprompt.backbones.embedding_cache import cache_path
from medprompt.data.volume_io import read_volume
from medprompt.methods.run_dir import LOG, WEIGHTS

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
    with tempfile.TemporaryDirectory(prefix="torchrun_") as scratch:  # torchrun's own folders go, too
        env["TMPDIR"] = scratch
        result = subprocess.run([*launcher, COMMAND_LINE, *args], capture_output=True, encoding="utf-8", env=env)
    reasons = [line for line in result.stderr.splitlines() if ": error: " in line]  # each failed member's one line
    result.stderr = "\n".join([result.stderr, *reasons])
    return result


def cache_content(dataset: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    with h5py.File(cache_path(dataset, "tiny_test"), "r") as f:
        return f["embeddings"][:], f["written"][:], dict(f.attrs)


def test_a_group_writes_the_cache_one_process_writes_and_a_killed_member_leaves_one_embed_finishes(
        synthetic_dataset, tiny_checkpoint, tmp_path):
    alone, group, killed = tmp_path / "alone", tmp_path / "group", tmp_path / "killed"
    for folder in (alone, group, killed):
        shutil.copytree(synthetic_dataset, folder)
    assert run_group(["embed", str(alone), *tiny_backbone_args(tiny_checkpoint)], processes=1).returncode == 0
    result = run_group(["embed", str(group), *tiny_backbone_args(tiny_checkpoint)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 of 2" in result.stderr and "rank 1 of 2" in result.stderr
    assert result.stdout.count("embeddings of 20 slices") == 1  # printed once, by the first member
    (embeddings, written, attrs), (expected, _, expected_attrs) = cache_content(group), cache_content(alone)
    assert np.array_equal(embeddings, expected) and written.all()
    assert attrs == expected_attrs
    assert sorted(p.name for p in (group / "embeddings").iterdir()) == ["tiny_test.h5"]

    assert run_group(["embed", str(killed), *tiny_backbone_args(tiny_checkpoint)], die="1:3").returncode != 0
    final = cache_path(killed, "tiny_test")
    assert not final.exists()
    assert len(list(final.parent.glob("tiny_test.h5.partial.batches/*.npy"))) >= 3  # rank 1's finished batches
    again = run_group(["embed", str(killed), *tiny_backbone_args(tiny_checkpoint)])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(rank 1 of 2): 100%" in again.stderr
    assert np.array_equal(cache_content(killed)[0], expected)
    assert sorted(p.name for p in final.parent.iterdir()) == ["tiny_test.h5"]


def prediction_content(folder: Path) -> dict[str, np.ndarray]:
    """What `predict` published in `folder`: each listed output's voxels (the predictions file's masks, the
    quality table's text)."""
    content = {}
    for name in (folder / "predict_outputs.txt").read_text().split():
        if name.endswith(".csv"):
            content[name] = np.array((folder / name).read_text())
        elif name.endswith(".h5"):
            with h5py.File(folder / name, "r") as f:
                content[name] = f["mask"][:]
        else:
            content[name] = read_volume(folder / name)[0]
    return content


def test_a_group_predicts_a_dataset_and_files_as_one_process_does(acdc_run, tmp_path):
    files = sorted(acdc_run.raw.glob("training/*/*_frame??.nii.gz"))[:3]
    assert len(files) == 3
    args = ["predict", str(acdc_run.run), str(acdc_run.dataset), *map(str, files)]
    alone, group = tmp_path / "alone", tmp_path / "group"
    assert run_group([*args, "--out", str(alone)], processes=1).returncode == 0
    result = run_group([*args, "--out", str(group)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("outputs in") == 1 and "predict (rank 1 of 2)" in result.stderr
    for folder in ("", acdc_run.dataset.name):  # the files' outputs, and the dataset's in its subfolder
        expected, content = prediction_content(alone / folder), prediction_content(group / folder)
        assert list(content) == list(expected) and len(content) >= 3
        assert all(np.array_equal(content[key], expected[key]) for key in expected)
        assert not (group / folder / ".predict_running").exists()


def test_a_refusal_ends_the_group_with_its_one_line_reason(acdc_run, tmp_path):
    result = run_group(["predict", str(tmp_path / "no_run"), str(acdc_run.dataset), "--out", str(tmp_path / "out")])
    assert result.returncode != 0
    assert "medprompt predict: error: " in result.stderr and "no_run" in result.stderr


def trained_weights(run: Path) -> dict[str, np.ndarray]:
    return load_file(str(run / WEIGHTS))


def assert_same_training(run: Path, expected: Path) -> None:
    """Equal weights and epoch log within floating-point tolerance (sums over the batch taken in another order)."""
    weights, reference = trained_weights(run), trained_weights(expected)
    assert weights.keys() == reference.keys()
    for name in reference:
        np.testing.assert_allclose(weights[name], reference[name], atol=1e-4, err_msg=name)
    log, reference_log = pd.read_csv(run / LOG), pd.read_csv(expected / LOG)
    np.testing.assert_allclose(log.loss, reference_log.loss, rtol=1e-4)
    assert list(log.state) == list(reference_log.state)


def train_alone_and_in_a_group(dataset: Path, tiny_checkpoint: Path, out: Path, *recipe: str,
                                die: str | None = None) -> subprocess.CompletedProcess:
    """A run trained by one process into out/alone, and by two into out/group; the group's result.
    5 shots in batches of 4: the second batch's one slice leaves the second member without a share."""
    args = ["train", str(dataset), "--shots", "5", "--epochs", "3", *backbone_args(tiny_checkpoint), *recipe]
    assert run_group([*args, "--out", str(out / "alone")], processes=1).returncode == 0
    return run_group([*args, "--out", str(out / "group")], die=die)


def test_a_group_trains_the_run_one_process_trains_the_second_pass_included(embedded, tiny_checkpoint, tmp_path):
    result = train_alone_and_in_a_group(embedded, tiny_checkpoint, tmp_path, "--method", "sam_sp", "--supervision",
                                        "masks", "--set", "refine.distill=0.5", "--set", "refine.second_pass_loss=0.5")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("trained") == 1 and "train (rank 1 of 2)" in result.stderr
    assert_same_training(tmp_path / "group", tmp_path / "alone")
    assert sorted(p.name for p in (tmp_path / "group").iterdir()) == \
        sorted(p.name for p in (tmp_path / "alone").iterdir())


def test_a_group_with_a_killed_member_leaves_a_run_that_resumes(embedded, tiny_checkpoint, tmp_path):
    killed = train_alone_and_in_a_group(embedded, tiny_checkpoint, tmp_path, die="1:3:step")  # in epoch 2 of 3
    assert killed.returncode != 0
    assert not (tmp_path / "group" / WEIGHTS).exists() and len(pd.read_csv(tmp_path / "group" / LOG)) == 1
    again = run_group(["train", str(embedded), "--out", str(tmp_path / "group"), "--resume",
                       *tiny_backbone_args(tiny_checkpoint)])
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("trained") == 1 and "train (rank 1 of 2)" in again.stderr
    assert_same_training(tmp_path / "group", tmp_path / "alone")  # the default recipe, as one process trains it
