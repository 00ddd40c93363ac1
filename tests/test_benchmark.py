"""`medprompt benchmark`: a protocol's cells run through the verbs' code, resume, refuse another protocol, and
summarise with intervals; on a synthetic ACDC download and the random tiny backbone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from helpers import BOX_SUPERVISION, NO_COLLAPSE_CHECK, expect_error
from medprompt.cli import benchmark
from medprompt.cli.benchmark import load_protocol, protocol_cells
from medprompt.cli.main import main
from medprompt.common.config import bundled_config_names, load_config
from medprompt.evaluation.evaluate import evaluate_slices
from medprompt.evaluation.summary import bootstrap_interval, summarise, summary_markdown
from medprompt.training.recipe import load_train_config
from preprocessing.phantoms import write_acdc, write_hc18
from tiny_backbone import build_tiny_backbone

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def protocol_file(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("bench")
    write_acdc(root / "downloads" / "ACDC", n_patients=5, seed=0)
    protocol = {
        "data": str(root / "downloads"), "backbone": "tiny_test", "checkpoint": str(tiny_checkpoint),
        "tasks": {"acdc_lv": {"dataset": "acdc", "raw": "ACDC", "label": 3, "volumes": True,
                              "preprocess": ["geometry.size=96", "splits.sizes={train: 3, val: 1, test: 1}"]}},
        "methods": {"default": {"method": "conv_fc", "set": [NO_COLLAPSE_CHECK, BOX_SUPERVISION, "epochs=1"]},
                    "bound": {"method": "box_prompted", "bound": True}},
        "shots": [2], "subsets": [0, 1], "seeds": [0], "set": [], "paper": {"acdc_lv": {"bound": 0.955}},
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(protocol, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def finished(protocol_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_out") / "out"
    assert main(["benchmark", str(protocol_file), "--out", str(out)]) == 0
    return out


def test_the_cells_are_tasks_times_methods_times_shots_subsets_and_seeds(protocol_file):
    cells = protocol_cells(load_protocol(str(protocol_file), None, ["seeds=[0, 1]"]))
    assert [c.key for c in cells] == ["acdc_lv/default/shots2_subset0_seed0", "acdc_lv/default/shots2_subset0_seed1",
                                      "acdc_lv/default/shots2_subset1_seed0", "acdc_lv/default/shots2_subset1_seed1",
                                      "acdc_lv/bound/shotsall_subset0_seed0"]


def test_each_run_row_is_what_evaluate_computes_on_its_predictions(finished, tmp_path):
    runs = pd.read_csv(finished / "runs.csv")
    assert len(runs) == 3 and set(runs.status) == {"ok"}
    dataset = next((finished / "data").iterdir())
    for row in runs.itertuples():
        scores = evaluate_slices(finished / "cells" / row.cell / "predictions", dataset)
        assert row.dice_2d == pytest.approx(scores.dice[scores.has_target].mean())
        assert row.test_slices == scores.has_target.sum() and np.isfinite(row.dice_3d)
        predictions = finished / "cells" / row.cell / "predictions"
        with h5py.File(predictions / "predictions.h5") as f:
            areas = (f["mask"][:] > 0).reshape(len(f["mask"]), -1).sum(1)
        assert pd.read_csv(predictions / "manifest.csv").mask_pixels.tolist() == areas.tolist()
        quality = pd.read_csv(predictions / "quality.csv", keep_default_na=False)
        cases = pd.read_csv(finished / "cells" / row.cell / "cases.csv", keep_default_na=False)
        assert row.flagged == (quality.review != "").sum() and len(cases) == len(quality)
        assert cases.set_index("case").review.to_dict() == quality.set_index("case").review.to_dict()
        metrics = tmp_path / f"{row.subset}_{row.method}.csv"
        assert main(["evaluate", str(finished / "cells" / row.cell / "predictions"), str(dataset), "--out",
                     str(metrics)]) == 0
        table = pd.read_csv(metrics)
        assert row.dice_2d == pytest.approx(table.dice[table.has_target].mean())
    assert all((finished / "cells" / c / "run" / "method.safetensors").is_file() for c in runs.cell)
    boxes = [pd.read_csv(finished / "cells" / c / "run" / "train_boxes.csv").slice_id.tolist()
             for c in runs.cell[runs.method == "default"]]
    assert boxes[0] != boxes[1]  # subsets draw different slices with the same initialisation seed
    summary = pd.read_csv(finished / "summary.csv")
    assert summary.method.tolist() == ["default", "bound"] and summary.bound.tolist() == [False, True]
    default = summary.iloc[0]
    assert default.dice_2d == pytest.approx(runs.dice_2d[runs.method == "default"].mean(), abs=1e-4)
    assert default.fraction_of_bound == pytest.approx(default.dice_2d / summary.iloc[1].dice_2d, abs=1e-3)
    assert summary.iloc[1].paper == 0.955 and (finished / "summary.png").stat().st_size > 0
    assert "| acdc_lv | default | 2 (2) |" in (finished / "summary.md").read_text()


def test_a_rerun_skips_finished_cells_and_redoes_a_killed_one(finished, protocol_file):
    unchanged = (finished / "runs.csv").read_text()
    assert main(["benchmark", str(protocol_file), "--out", str(finished)]) == 0
    assert (finished / "runs.csv").read_text() == unchanged  # nothing redone: the same rows, timings included
    before = pd.read_csv(finished / "summary.csv").drop(columns="train_s")
    done = finished / "cells" / "acdc_lv" / "default" / "shots2_subset0_seed0" / "cell.json"
    stamp = done.stat().st_mtime_ns
    killed = finished / "cells" / "acdc_lv" / "default" / "shots2_subset1_seed0"
    (killed / "cell.json").unlink()  # killed after training: the cell starts over
    (killed / "slices.csv").unlink()
    assert main(["benchmark", str(protocol_file), "--out", str(finished)]) == 0
    assert done.stat().st_mtime_ns == stamp and (killed / "cell.json").is_file()
    # the same figures; only the redone cell's training time differs
    pd.testing.assert_frame_equal(pd.read_csv(finished / "summary.csv").drop(columns="train_s"), before)


def test_extend_runs_the_added_cells_and_keeps_the_finished_ones(finished, protocol_file, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    stamps = {path: path.stat().st_mtime_ns for path in out.glob("cells/*/*/*/cell.json")}
    more = ["--set", "subsets=[0, 1, 2]"]
    expect_error(capsys, ["benchmark", str(protocol_file), "--out", str(out), *more], "another protocol ran here",
                 "subsets: recorded [0, 1], now [0, 1, 2]", "or --extend to add")
    expect_error(capsys, ["benchmark", str(protocol_file), "--out", str(out), *more, "--dry-run"],
                 "another protocol ran here", "or --extend to add")  # the dry run says what the run would
    assert main(["benchmark", str(protocol_file), "--out", str(out), *more, "--extend", "--dry-run"]) == 0
    assert capsys.readouterr().out.count("    finished") == 3
    assert main(["benchmark", str(protocol_file), "--out", str(out), *more, "--extend"]) == 0
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps  # nothing finished was run again
    runs = pd.read_csv(out / "runs.csv")
    assert sorted(runs.subset[runs.method == "default"]) == [0, 1, 2] and set(runs.status) == {"ok"}
    assert yaml.safe_load((out / "protocol.yaml").read_text())["subsets"] == [0, 1, 2]
    capsys.readouterr()
    # what a finished cell was run with cannot change under --extend
    error = expect_error(capsys, ["benchmark", str(protocol_file), "--out", str(out), *more, "--extend", "--set",
                                  "set=[epochs=2]"], "another protocol ran here", "set: recorded [], now ['epochs=2']")
    assert "--extend to add" not in error
    # an archive holds the cells of the protocol as given, not those that a larger one left in the folder
    kept = tmp_path / "kept"
    assert main(["benchmark", str(protocol_file), "--out", str(out), "--set", "subsets=[0]", "--extend",
                 "--archive", str(kept)]) == 0
    assert sorted(path.parent.relative_to(kept / "cells").as_posix() for path in kept.glob("cells/*/*/*/cell.json")) \
        == ["acdc_lv/bound/shotsall_subset0_seed0", "acdc_lv/default/shots2_subset0_seed0"]
    # a folder with fewer subsets merges into the larger protocol: the cells both have are alike
    fresh = tmp_path / "fresh"
    assert main(["benchmark", str(protocol_file), "--out", str(fresh), *more, "--merge", str(finished),
                 "--only", "acdc_lv/bound"]) == 0
    assert "merged 3 finished cells" in capsys.readouterr().out
    assert pd.read_csv(fresh / "runs.csv").cell.tolist() == pd.read_csv(finished / "runs.csv").cell.tolist()


def test_another_protocol_in_the_same_folder_is_refused_by_key(finished, protocol_file, capsys):
    expect_error(capsys, ["benchmark", str(protocol_file), "--out", str(finished), "--set", "seeds=[1]"],
                 "another protocol ran here", "seeds: recorded [0], now [1]")


def test_a_prediction_time_variant_predicts_its_sources_runs_again_without_training(protocol_file, tmp_path):
    protocol = yaml.safe_load(protocol_file.read_text())
    protocol["subsets"] = [0]
    protocol["methods"]["one_pass"] = {"from": "default", "predict": {"enabled": False}}
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(protocol, sort_keys=False))
    assert [c.key for c in protocol_cells(load_protocol(str(path), None, []))] == [
        "acdc_lv/default/shots2_subset0_seed0", "acdc_lv/bound/shotsall_subset0_seed0",
        "acdc_lv/one_pass/shots2_subset0_seed0"]
    out = tmp_path / "out"
    assert main(["benchmark", str(path), "--out", str(out)]) == 0
    runs = pd.read_csv(out / "runs.csv").set_index("method")
    assert runs.loc["one_pass", "train_s"] == 0 and runs.loc["one_pass", "method_name"] == "conv_fc"
    variant = out / "cells" / "acdc_lv" / "one_pass" / "shots2_subset0_seed0"
    assert not (variant / "run").exists()
    # what `predict --no-refine` gives with the default's run
    dataset, again = next((out / "data").iterdir()), tmp_path / "again"
    assert main(["predict", str(out / "cells" / "acdc_lv" / "default" / "shots2_subset0_seed0" / "run"), str(dataset),
                 "--split", "test", "--no-refine", "--out", str(again)]) == 0
    scores = evaluate_slices(again, dataset)
    assert runs.loc["one_pass", "dice_2d"] == pytest.approx(scores.dice[scores.has_target].mean())


@pytest.mark.parametrize("method, fragment", [
    ({"from": "bound"}, "`from: bound` must name a trained method of the protocol"),
    ({"from": "default", "predict": {"margin": 2}}, "predict.margin is not a setting of the prediction"),
    ({"from": "default", "method": "conv_fc"}, "needs either `method`"),
])
def test_a_variant_must_name_a_trained_method_and_prediction_settings(protocol_file, tmp_path, capsys, method,
                                                                       fragment):
    protocol = yaml.safe_load(protocol_file.read_text())
    protocol["methods"]["variant"] = method
    path = tmp_path / "variant.yaml"
    path.write_text(yaml.safe_dump(protocol, sort_keys=False))
    expect_error(capsys, ["benchmark", str(path), "--out", str(tmp_path / "out")], fragment)
    assert not (tmp_path / "out").exists()


def test_torchrun_shares_the_cells_out_and_writes_the_same_tables(finished, protocol_file, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(TESTS / "medprompt_with_tiny_backbone.py"), "benchmark", str(protocol_file), "--out",
                             str(out)], capture_output=True, encoding="utf-8",
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path),
                                 "TMPDIR": str(tmp_path)})  # torchrun's own folders stay in the test's
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 of 2" in result.stderr and "rank 1 of 2" in result.stderr
    assert result.stdout.count("| acdc_lv |") == 2  # the table, printed once
    timings = ["train_s", "predict_s"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "runs.csv").drop(columns=timings),
                                  pd.read_csv(finished / "runs.csv").drop(columns=timings))
    pd.testing.assert_frame_equal(pd.read_csv(out / "summary.csv").drop(columns="train_s"),
                                  pd.read_csv(finished / "summary.csv").drop(columns="train_s"))


def test_the_dry_run_lists_the_cells_and_writes_nothing(protocol_file, tmp_path, capsys, monkeypatch):
    timed = []
    monkeypatch.setattr(benchmark, "step_seconds",
                        lambda backbone, cfg, batch: timed.append((cfg["method"], batch)) or 3.0)
    assert main(["benchmark", str(protocol_file), "--out", str(tmp_path / "never"), "--dry-run",
                 "--set", "seeds=[0, 1, 2]"]) == 0
    out = capsys.readouterr().out
    assert "7 cells (here: default 3.00 s a step of 2; the encoder" in out and not (tmp_path / "never").exists()
    assert timed == [("conv_fc", 2)]  # one step timed per method and batch size, not per cell
    assert out.count("~  0.1 min training") == 6  # 1 epoch x 1 step x 3 s


def test_a_step_is_timed_on_what_each_method_reads():
    backbone = build_tiny_backbone(seed=0)
    for method in ("conv_fc", "unet", "autosam"):  # embeddings, the slices themselves, both
        assert benchmark.step_seconds(backbone, load_train_config(method, None, ["batch_size=2"]), 2) > 0
    assert benchmark.step_seconds(backbone, load_train_config("persam", None, []), 1) == 0.0  # nothing to learn


def test_a_datasets_own_score_goes_into_the_tables(tmp_path, tiny_checkpoint):
    """HC18's head circumference error: each cell's mean is what `medprompt evaluate` gives on its predictions
    (the images where an ellipse can be fitted to the prediction)."""
    raw = write_hc18(tmp_path / "downloads" / "HC18", n_images=6, seed=0)
    protocol = {
        "data": str(tmp_path / "downloads"), "backbone": "tiny_test", "checkpoint": str(tiny_checkpoint),
        "tasks": {"hc18": {"dataset": "hc18", "raw": "HC18", "label": 1, "volumes": False,
                           "preprocess": ["geometry.size=96", "splits.sizes={train: 2, val: 1, test: 3}"]}},
        "methods": {"bound": {"method": "box_prompted", "bound": True}},
        "shots": [2], "subsets": [0], "seeds": [0], "set": [], "paper": {},
    }
    (tmp_path / "hc.yaml").write_text(yaml.safe_dump(protocol, sort_keys=False))
    out = tmp_path / "out"
    assert main(["benchmark", str(tmp_path / "hc.yaml"), "--out", str(out)]) == 0
    run = pd.read_csv(out / "runs.csv").iloc[0]
    assert main(["evaluate", str(out / "cells" / run.cell / "predictions"), str(raw),
                 "--out", str(tmp_path / "scores.csv")]) == 0
    expected = pd.read_csv(tmp_path / "scores.csv").hc_error_mm
    assert expected.notna().sum() >= 1 and expected.mean() > 0  # images where no ellipse fits don't count
    assert run.hc_error_mm == pytest.approx(expected.mean())
    assert pd.read_csv(out / "summary.csv").hc_error_mm.iloc[0] == pytest.approx(expected.mean())
    header, _, row = (out / "summary.md").read_text().splitlines()[:3]
    assert "| HD95 mm | hc error mm | training s |" in header and f"| {expected.mean():.1f} |" in row


def test_intervals_and_fractions_by_hand():
    assert bootstrap_interval(np.full(5, 0.8)) == (pytest.approx(0.8), pytest.approx(0.8))
    low, high = bootstrap_interval(np.array([0.0, 1.0] * 20))
    assert 0.3 < low < 0.5 < high < 0.7
    runs = pd.DataFrame({"cell": ["a", "b", "c"], "task": "t", "method": ["m", "m", "bound"], "status": "ok",
                         "test_slices": 2, "dice_2d": [0.6, 0.8, 0.875], "dice_3d": np.nan, "hd95_mm": np.nan,
                         "train_s": 1.0, "shots": 2, "subset": 0, "seed": 0})
    table = pd.DataFrame({"patient": ["p1", "p2"], "has_target": True, "dice": [0.5, 0.9]})
    summary = summarise(runs, {"a": table, "b": table}, {"t": "bound"}, {}, {})
    row = summary.iloc[0]
    assert row.dice_2d == pytest.approx(0.7) and row.dice_2d_std == pytest.approx(0.1)
    assert row.fraction_of_bound == pytest.approx(0.8) and row.test_patients == 2
    assert 0.5 <= row.ci_low <= row.ci_high <= 0.9
    bound = summary.iloc[1]
    assert np.isnan(bound.dice_2d_std)  # one run has no spread over runs
    table_lines = summary_markdown(summary, runs.iloc[:0]).splitlines()
    assert "| 0.700 +- 0.100 |" in table_lines[2] and "| 0.875 |" in table_lines[3]


@pytest.mark.parametrize("name", [n.split("/")[1] for n in bundled_config_names() if n.startswith("benchmarks/")])
def test_every_bundled_protocol_lists_its_cells_and_its_settings_load(name):
    protocol = load_protocol(name, None, [])
    cells = protocol_cells(protocol)
    assert {cell.task for cell in cells} == set(protocol["tasks"])
    assert {cell.method for cell in cells} == set(protocol["methods"])
    for spec in protocol["tasks"].values():
        config = load_config(spec["dataset"], overrides=list(spec.get("preprocess") or []))
        assert config["dataset"] == spec["dataset"] and spec["label"] in config["labels"]
    for spec in protocol["methods"].values():
        if "method" in spec:
            given = [*protocol.get("set", []), *spec.get("set", []), *([f"supervision={spec['supervision']}"]
                                                                     if spec.get("supervision") else [])]
            assert load_train_config(spec["method"], spec.get("config"), given)["method"] == spec["method"]


def test_subsets_of_a_train_split_smaller_than_the_shots_are_not_run_twice(protocol_file, tmp_path):
    out = tmp_path / "out"
    assert main(["benchmark", str(protocol_file), "--out", str(out), "--set", "shots=[1000]"]) == 0
    runs = pd.read_csv(out / "runs.csv").set_index("subset")
    assert runs.loc[0].query("method == 'default'").status.item() == "ok"
    skipped = runs.loc[1]
    assert skipped.status.startswith("not run: the train split has ") and "subset 0 is their run" in skipped.status
    assert not (out / "cells" / skipped.cell / "run").exists()
    assert "| acdc_lv | default | 2 (1) |" in (out / "summary.md").read_text()


def test_only_runs_the_chosen_cells_and_the_tables_say_what_is_pending(protocol_file, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["benchmark", str(protocol_file), "--out", str(out), "--only", "acdc_lv/bou*"]) == 0
    runs = pd.read_csv(out / "runs.csv")
    assert runs.method.tolist() == ["bound"] and not (out / "cells" / "acdc_lv" / "default").exists()
    assert "A partial table: 2 of the protocol's 3 cells are not run yet" in (out / "summary.md").read_text()
    assert main(["benchmark", str(protocol_file), "--out", str(out)]) == 0  # the rest, later
    assert len(pd.read_csv(out / "runs.csv")) == 3 and "partial" not in (out / "summary.md").read_text()
    capsys.readouterr()
    expect_error(capsys, ["benchmark", str(protocol_file), "--out", str(out), "--only", "hc18"],
                 "--only hc18: no cell of the protocol matches", "acdc_lv/bound, acdc_lv/default")


def test_the_dry_run_marks_the_cells_finished_in_the_folder(finished, protocol_file, capsys, monkeypatch):
    monkeypatch.setattr(benchmark, "step_seconds", lambda backbone, cfg, batch: 3.0)
    assert main(["benchmark", str(protocol_file), "--out", str(finished), "--dry-run", "--only", "acdc_lv"]) == 0
    out = capsys.readouterr().out
    assert out.count("    finished") == 3 and "total ~0 min" in out


def test_the_dry_run_counts_all_shots_as_the_prepared_train_split(finished, protocol_file, capsys, monkeypatch):
    monkeypatch.setattr(benchmark, "step_seconds", lambda backbone, cfg, batch: 60.0)
    assert main(["benchmark", str(protocol_file), "--out", str(finished), "--dry-run", "--set", "shots=[all]",
                 "--set", "subsets=[0]", "--extend"]) == 0
    manifest = pd.read_csv(next((finished / "data").iterdir()) / "manifest.csv")
    train = int(((manifest.split == "train") & manifest.has_target).sum())
    batch = load_train_config("conv_fc", None, [])["batch_size"]
    assert train > 10  # more than the 10 the estimate assumes before the data is prepared
    minutes = -(-train // batch)  # 1 epoch of ceil(train / batch) steps of 60 s
    line = next(x for x in capsys.readouterr().out.splitlines() if "acdc_lv/default/shotsall" in x)
    assert line.endswith(f"~{minutes:5.1f} min training")


def test_the_tables_name_cells_relative_to_the_folder(finished, protocol_file, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(finished, out)
    rows = pd.read_csv(out / "runs.csv").to_dict("records")
    failed = {**rows[0], "cell": "acdc_lv/default/shots2_subset5_seed0", "subset": 5, "status":
              f"no model: {out}/cells/acdc_lv/default/shots2_subset5_seed0/run: training collapsed"}
    elsewhere = {**failed, "cell": "acdc_lv/default/shots2_subset6_seed0", "subset": 6, "status":  # a merged cell
                 "no model: /another/machine/bench/cells/acdc_lv/default/shots2_subset6_seed0/run: training collapsed"}
    markdown = benchmark.write_summaries(out, load_protocol(str(protocol_file), None, []), [*rows, failed, elsewhere])
    assert "no model: cells/acdc_lv/default/shots2_subset5_seed0/run: training collapsed" in markdown
    assert "no model: cells/acdc_lv/default/shots2_subset6_seed0/run: training collapsed" in markdown
    for text in (markdown, (out / "runs.csv").read_text()):
        assert str(tmp_path) not in text and "/another/machine" not in text


def test_an_archive_holds_the_scores_alone_and_merging_it_rebuilds_the_same_tables(finished, protocol_file, tmp_path,
                                                                                   capsys):
    kept = tmp_path / "kept"
    assert main(["benchmark", str(protocol_file), "--out", str(finished), "--archive", str(kept)]) == 0
    cells = sorted(path.parent.relative_to(kept) for path in kept.glob("cells/*/*/*/cell.json"))
    assert len(cells) == 3 and not list(kept.rglob("*.safetensors")) and not list(kept.rglob("predictions"))
    assert {p.name for p in (kept / cells[0]).iterdir()} == {"cell.json", "slices.csv", "cases.csv"}
    recorded = yaml.safe_load((kept / "protocol.yaml").read_text())  # no machine's path in a committed archive
    assert "data" not in recorded and all("data" not in spec for spec in recorded["tasks"].values())
    assert recorded["tasks"] == yaml.safe_load((finished / "protocol.yaml").read_text())["tasks"]
    slices = pd.read_csv(kept / cells[0] / "slices.csv", dtype=str)
    assert (slices.patient == slices.case.str.split("_").str[0]).all()  # ACDC: patient001_ED is patient001's
    # another machine, the data elsewhere: the merged cells are finished there, nothing is prepared or trained
    fresh = tmp_path / "fresh"
    capsys.readouterr()
    assert main(["benchmark", str(protocol_file), "--out", str(fresh), "--merge", str(kept), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("    finished") == 3 and not fresh.exists()  # the dry run counts them too
    assert main(["benchmark", str(protocol_file), "--out", str(fresh), "--merge", str(kept),
                 "--data", str(tmp_path / "elsewhere")]) == 0
    assert "merged 3 finished cells" in capsys.readouterr().out and not (fresh / "data").exists()
    for table in ("runs.csv", "summary.csv", "summary.md"):
        assert (fresh / table).read_text() == (finished / table).read_text()
    expect_error(capsys, ["benchmark", str(protocol_file), "--out", str(tmp_path / "other"), "--merge", str(kept),
                          "--set", "set=[epochs=2]"], f"--merge {kept}: another protocol ran there",
                 "set: recorded [], now ['epochs=2']")
    expect_error(capsys, ["benchmark", str(protocol_file), "--out", str(tmp_path / "other"), "--merge",
                          str(tmp_path)], "no protocol.yaml there")
    assert not (tmp_path / "other").exists()  # refused before anything is written
