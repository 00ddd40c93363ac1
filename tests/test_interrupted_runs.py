"""A run killed part-way leaves nothing that passes for finished, and never loses what was there before.

`predict` and `reconstruct` mark their folder until it is complete, so `evaluate` refuses an interrupted or
mixed one; `preprocess --overwrite` keeps the old dataset until the new one is complete. (An interrupted
`embed` or `train` resumes to identical results: tests/test_embedding_cache.py and tests/test_training.py.)
"""

import shutil

from helpers import backbone_args, expect_error, interrupt_on_call
from medprompt.cli.main import main
from medprompt.data import dataset as dataset_module
from medprompt.inference import reconstruct as reconstruct_module


def test_an_interrupted_predict_is_refused_by_evaluate_until_predicted_again(acdc_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "pred"
    restore = interrupt_on_call(monkeypatch, reconstruct_module, "write_volume", 2)
    assert main(["predict", str(acdc_run.run), str(acdc_run.dataset), "--out", str(out)]) == 130
    assert len(list(out.glob("*.nii.gz"))) == 1  # the first volume was written, then the kill
    capsys.readouterr()
    expect_error(capsys, ["evaluate", str(out), str(acdc_run.raw), "--out", str(tmp_path / "m.csv")],
                 f"{out}: the `medprompt predict` (pid ", "that wrote this folder did not finish")
    assert not (tmp_path / "m.csv").exists()
    restore()
    assert main(["predict", str(acdc_run.run), str(acdc_run.dataset), "--out", str(out)]) == 0
    assert main(["evaluate", str(out), str(acdc_run.raw), "--out", str(tmp_path / "m.csv")]) == 0


def test_a_second_model_killed_while_writing_into_the_first_ones_folder_is_not_mixed(acdc_run, tiny_checkpoint,
                                                                                      tmp_path, capsys, monkeypatch):
    out, other_run = tmp_path / "pred", tmp_path / "other_run"
    shutil.copytree(acdc_run.predictions, out)
    assert main(["train", str(acdc_run.dataset), "--out", str(other_run), "--shots", "2", "--seed", "3",
                 "--epochs", "1", *backbone_args(tiny_checkpoint)]) == 0
    interrupt_on_call(monkeypatch, reconstruct_module, "write_volume", 2)
    assert main(["predict", str(other_run), str(acdc_run.dataset), "--out", str(out)]) == 130
    capsys.readouterr()
    expect_error(capsys, ["evaluate", str(out), str(acdc_run.dataset), "--out", str(tmp_path / "m.csv")],
                 "did not finish")


def test_an_interrupted_preprocess_overwrite_keeps_the_previous_dataset(acdc_run, tmp_path, monkeypatch):
    copy = tmp_path / "dataset"
    shutil.copytree(acdc_run.dataset, copy)
    before = {name: (copy / name).read_bytes() for name in ("manifest.csv", "slices.h5")}
    interrupt_on_call(monkeypatch, dataset_module, "image_fingerprint", 1)
    assert main(["preprocess", "acdc", str(acdc_run.raw), str(copy), "--overwrite", "--set", "target=RV"]) == 130
    assert {name: (copy / name).read_bytes() for name in before} == before
    assert not list(copy.glob("*.partial"))


def test_an_interrupted_reconstruct_is_refused_by_evaluate(acdc_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "volumes"
    interrupt_on_call(monkeypatch, reconstruct_module, "write_volume", 2)
    assert main(["reconstruct", str(acdc_run.dataset), f"{acdc_run.dataset / 'slices.h5'}:mask", "--out", str(out)]) == 130
    capsys.readouterr()
    expect_error(capsys, ["evaluate", str(out), str(acdc_run.raw), "--out", str(tmp_path / "m.csv")],
                 "the `medprompt reconstruct` (pid ", "did not finish")
