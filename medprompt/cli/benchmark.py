"""The `benchmark` verb: a protocol's table (tasks x methods x shots x subsets x seeds) in one resumable command.

Each cell is an ordinary run through the verbs' own code: preprocess and embed once per task data, then train,
predict the test split and evaluate. A cell is finished when its `cell.json` exists; a rerun skips finished
cells and redoes a killed one from the start. Outputs in --out:

    protocol.yaml             the resolved protocol (a different one is refused; --extend takes one that only
                              lists more tasks, methods, shots, subsets or seeds)
    data/<dataset>_<hash>/    each task's preprocessed dataset and its embedding cache
    cells/<task>/<method>/shots<k>_subset<s>_seed<r>/   run/, predictions/, slices.csv, cases.csv, cell.json
    runs.csv                  one row per run
    summary.csv, summary.md, summary.png   per task and method (`medprompt.evaluation.summary`)

`--archive FOLDER` also copies the protocol, the tables and each finished cell's results (its RESULT_FILES, no
weights or predictions: small enough for version control) into FOLDER; `--merge FOLDER` brings such a folder's
finished cells (or another output folder's) into --out, so a table grows across machines and sessions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any, NamedTuple

from medprompt.cli.options import Verb, add_device, add_engine

CELL_DONE = "cell.json"
RESULT_FILES = ("slices.csv", "cases.csv", CELL_DONE)  # a finished cell's results; cell.json last, as it marks one
TABLES = ("protocol.yaml", "runs.csv", "summary.csv", "summary.md", "summary.png")
LISTED = ("tasks", "methods", "shots", "subsets", "seeds", "paper")  # what --extend may add to (paper: may change)
RUN_COLUMNS = ["cell", "task", "method", "method_name", "supervision", "shots", "subset", "seed", "status",
               "test_slices", "dice_2d", "dice_3d", "hd95_mm", "assd_mm", "flagged", "train_s", "predict_s"]


class Cell(NamedTuple):
    """One run of the protocol."""

    task: str
    method: str
    shots: int | str
    subset: int
    seed: int

    @property
    def key(self) -> str:
        return f"{self.task}/{self.method}/shots{self.shots}_subset{self.subset}_seed{self.seed}"


def load_protocol(name: str, data: Path | None, overrides: list[str]) -> dict[str, Any]:
    """A bundled protocol (`benchmarks/NAME`) or a YAML file, with --data and --set applied, checked."""
    from medprompt.common.config import apply_overrides, bundled_config_path, read_yaml
    from medprompt.common.errors import MedpromptError

    path = Path(name)
    protocol = read_yaml(path if path.suffix in (".yaml", ".yml") else bundled_config_path(f"benchmarks/{name}"))
    protocol = apply_overrides(protocol, overrides)
    if data is not None:
        protocol["data"] = str(data)
    for key in ("tasks", "methods"):
        if not isinstance(protocol.get(key), dict) or not protocol[key]:
            raise MedpromptError(f"protocol {name}: `{key}` must map names to settings")
    for key in ("shots", "subsets", "seeds"):
        values = protocol.get(key)
        if not isinstance(values, list) or not values:
            raise MedpromptError(f"protocol {name}: `{key}` must be a non-empty list")
    for task, spec in protocol["tasks"].items():
        missing = [k for k in ("dataset", "raw", "label") if not isinstance(spec, dict) or k not in spec]
        if missing:
            raise MedpromptError(f"protocol {name}: task {task} lacks {', '.join(missing)}")
    for method, spec in protocol["methods"].items():
        if not isinstance(spec, dict) or ("method" not in spec) == ("from" not in spec):
            raise MedpromptError(f"protocol {name}: method {method} needs either `method` (a registered method) or "
                                 "`from` (another method of the protocol whose runs it predicts again)")
        if "from" in spec:
            check_reuse(name, method, spec, protocol["methods"])
    return protocol


def check_reuse(name: str, method: str, spec: dict[str, Any], methods: dict[str, Any]) -> None:
    """A method `from` another predicts that method's runs again with its `predict` settings (fields of the
    config's `refine` section): a prediction-time variant that costs no training."""
    from dataclasses import fields

    from medprompt.common.errors import MedpromptError
    from medprompt.methods.refinement import RefineConfig

    source = methods.get(spec["from"])
    if not isinstance(source, dict) or "method" not in source or source.get("bound"):
        raise MedpromptError(f"protocol {name}: method {method}: `from: {spec['from']}` must name a trained method "
                             "of the protocol")
    known = {f.name for f in fields(RefineConfig)}
    unknown = sorted(set(spec.get("predict") or {}) - known)
    if unknown:
        raise MedpromptError(f"protocol {name}: method {method}: predict.{unknown[0]} is not a setting of the "
                             f"prediction (one of {sorted(known)})")


def protocol_cells(protocol: dict[str, Any]) -> list[Cell]:
    """Every run: per task, per method, its shots x subsets x seeds (one run for a bound)."""
    cells = []
    for task in protocol["tasks"]:
        for name, spec in protocol["methods"].items():
            if spec.get("bound"):
                cells.append(Cell(task, name, "all", 0, 0))
                continue
            runs = protocol["methods"][spec["from"]] if "from" in spec else spec
            for shots in runs.get("shots", protocol["shots"]):
                for subset in runs.get("subsets", protocol["subsets"]):
                    for seed in runs.get("seeds", protocol["seeds"]):
                        cells.append(Cell(task, name, shots, int(subset), int(seed)))
    return cells


def chosen_cells(cells: list[Cell], patterns: list[str]) -> list[Cell]:
    """The cells whose task or `task/method` matches one of the --only patterns (shell-style), or all of them."""
    from fnmatch import fnmatchcase

    from medprompt.common.errors import MedpromptError

    if not patterns:
        return cells
    chosen = [c for c in cells if any(fnmatchcase(c.task, p) or fnmatchcase(f"{c.task}/{c.method}", p)
                                       for p in patterns)]
    if not chosen:
        names = sorted({f"{c.task}/{c.method}" for c in cells})
        raise MedpromptError(f"--only {' '.join(patterns)}: no cell of the protocol matches (a task or task/method: "
                             f"{', '.join(names[:6])}{' ...' if len(names) > 6 else ''})")
    return chosen


def unfinished(cells: list[Cell], out: Path) -> list[Cell]:
    """The cells without a `cell.json` in --out."""
    return [cell for cell in cells if not (out / "cells" / cell.key / CELL_DONE).is_file()]


def training_cell(cell: Cell, protocol: dict[str, Any]) -> Cell:
    """The cell whose run `cell` predicts with: its own, or for a `from` method the source method's."""
    source = protocol["methods"][cell.method].get("from")
    return cell._replace(method=source) if source else cell


def raw_folder(protocol: dict[str, Any], task: str) -> Path:
    spec = protocol["tasks"][task]
    return Path(spec.get("data") or protocol["data"]) / spec["raw"]


def task_data(out: Path, protocol: dict[str, Any], task: str) -> Path:
    """The preprocessed dataset a task reads: shared by tasks with the same raw folder and preprocessing."""
    spec = protocol["tasks"][task]
    identity = json.dumps([spec["dataset"], str(raw_folder(protocol, task)), spec.get("preprocess") or []])
    return out / "data" / f"{spec['dataset']}_{hashlib.sha256(identity.encode()).hexdigest()[:8]}"


def prepare_task(out: Path, protocol: dict[str, Any], task: str, backbone) -> Any:
    """Preprocess (once) and embed (resumable) a task's data; the dataset."""
    from medprompt.backbones.embedding_cache import build_cache
    from medprompt.common.config import load_config
    from medprompt.data.dataset import PreprocessedDataset
    from preprocessing.pipeline import preprocess

    spec, root = protocol["tasks"][task], task_data(out, protocol, task)
    if not (root / "manifest.csv").is_file():
        config = load_config(spec["dataset"], overrides=list(spec.get("preprocess") or []))
        preprocess(spec["dataset"], raw_folder(protocol, task), root, config, overwrite=True)
    dataset = PreprocessedDataset(root)
    print(f"{task}: {len(dataset)} slices in {root}")
    build_cache(dataset, backbone)  # its bar: the first embedding of a task at scale takes minutes
    return dataset


def run_cell(cell: Cell, protocol: dict[str, Any], dataset, backbone, out: Path) -> dict[str, Any]:
    """Train, predict the test split and evaluate one cell; its row (also written as the cell's `cell.json`)."""
    from medprompt.common.errors import MedpromptError
    from medprompt.methods.run_dir import load_trained
    from medprompt.training.recipe import load_train_config
    from medprompt.training.run import train

    folder = out / "cells" / cell.key
    if (folder / CELL_DONE).is_file():
        return json.loads((folder / CELL_DONE).read_text())
    if folder.exists():
        shutil.rmtree(folder)  # a killed cell starts over
    folder.mkdir(parents=True)
    task, spec = protocol["tasks"][cell.task], protocol["methods"][cell.method]
    if "from" in spec:
        return predict_again(cell, protocol, dataset, backbone, out)
    given = [f"label={task['label']}", f"seed={cell.seed}", f"subset={cell.subset}",
             *(f"{k}={spec[k]}" for k in ("supervision",) if spec.get(k)), *protocol.get("set", []),
             *spec.get("set", [])]
    row = {"cell": cell.key, "task": cell.task, "method": cell.method, "method_name": spec["method"],
           "shots": cell.shots, "subset": cell.subset, "seed": cell.seed, "status": "ok", "test_slices": 0}
    if cell.shots != "all":
        available = len(dataset.rows("train", with_target=True))
        given.append(f"shots={min(int(cell.shots), available)}")
        if available <= int(cell.shots) and cell.subset > 0:  # every subset would draw the same slices
            row["status"] = (f"not run: the train split has {available} slices with the structure, so every "
                             "subset draws all of them; subset 0 is their run")
            return finish_cell(folder, row)
    start = time.perf_counter()
    try:
        cfg = load_train_config(spec["method"], spec.get("config"), given)
        row["supervision"] = cfg["supervision"]
        train(dataset, backbone, cfg, folder / "run", checkpoint=protocol.get("checkpoint"), progress=False)
    except MedpromptError as exc:
        row["status"] = f"no model: {exc}"
    row["train_s"] = round(time.perf_counter() - start, 1)
    if row["status"] == "ok":
        predict_and_score(load_trained(folder / "run", backbone.device, backbone=backbone), cell, protocol, dataset,
                          folder, row)
    return finish_cell(folder, row)


def predict_and_score(model, cell: Cell, protocol: dict[str, Any], dataset, folder: Path, row: dict[str, Any]) -> None:
    """Predict the test split into the cell's folder and add its scores to `row`: 2D; each case against the raw
    download beside its quality signals, with 3D in mm for volumes and the means of the dataset's own scores
    (HC18's head circumference error); the number of cases flagged for review."""
    import pandas as pd

    from medprompt.evaluation.evaluate import evaluate_slices, evaluate_volumes
    from medprompt.inference.quality import QUALITY
    from medprompt.inference.segment import predict_dataset
    from preprocessing.pipeline import GROUND_TRUTH_LAYOUTS

    task = protocol["tasks"][cell.task]
    start = time.perf_counter()
    predict_dataset(model, dataset.root, folder / "predictions", ["test"], progress=False)
    row["predict_s"] = round(time.perf_counter() - start, 1)
    slices = evaluate_slices(folder / "predictions", dataset.root)
    patients = dataset.manifest[["case", "patient"]].astype(str).drop_duplicates("case")
    slices = slices.merge(patients, on="case", how="left")  # the intervals' resampling unit, kept with the scores
    slices.to_csv(folder / "slices.csv", index=False)
    scored = slices[slices.has_target]
    quality = pd.read_csv(folder / "predictions" / QUALITY, dtype={"case": str}, keep_default_na=False)
    row.update(test_slices=len(scored), dice_2d=float(scored.dice.mean()), flagged=int((quality.review != "").sum()))
    cases, _ = evaluate_volumes(folder / "predictions", raw_folder(protocol, cell.task),
                                labels={int(task["label"]): cell.task}, layouts=GROUND_TRUTH_LAYOUTS, progress=False)
    row.update({column: float(cases[column].mean()) for column in cases.attrs.get("extra_columns", {})})
    cases = cases.merge(quality[["case", "removed_fraction", "review"]], on="case", how="left")
    cases.to_csv(folder / "cases.csv", index=False)
    if task.get("volumes"):
        row.update(dice_3d=float(cases.dice.mean()), hd95_mm=float(cases.hd95_mm.mean()),
                   assd_mm=float(cases.assd_mm.mean()))


def finish_cell(folder: Path, row: dict[str, Any]) -> dict[str, Any]:
    """Write the cell's `cell.json` (the mark that it is finished, naming no machine's path); its row."""
    from medprompt.common.atomic import atomic_path

    row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
    row["status"] = relative_status(row["status"], row["cell"])
    with atomic_path(folder / CELL_DONE) as tmp:
        tmp.write_text(json.dumps(row, indent=1))
    return row


def predict_again(cell: Cell, protocol: dict[str, Any], dataset, backbone, out: Path) -> dict[str, Any]:
    """A `from` method's cell: the source method's run of the same shots, subset and seed (trained first if it is
    not yet), predicted with the `predict` settings; no training of its own."""
    from dataclasses import replace

    from medprompt.methods.run_dir import load_trained

    spec = protocol["methods"][cell.method]
    source = run_cell(cell._replace(method=spec["from"]), protocol, dataset, backbone, out)
    folder = out / "cells" / cell.key
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    row = {**{k: source.get(k) for k in ("method_name", "supervision")}, "cell": cell.key, "task": cell.task,
           "method": cell.method, "shots": cell.shots, "subset": cell.subset, "seed": cell.seed,
           "status": source["status"], "test_slices": 0, "train_s": 0.0}
    if row["status"] == "ok":
        model = load_trained(out / "cells" / source["cell"] / "run", backbone.device, backbone=backbone)
        model.refine = replace(model.refine, **(spec.get("predict") or {}))
        predict_and_score(model, cell, protocol, dataset, folder, row)
    return finish_cell(folder, row)


def cell_conflicts(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What two protocols set differently for a cell they both have: their shared tasks' and methods' settings and
    those every cell reads (backbone, checkpoint, set, data); not which tasks, methods, shots, subsets and seeds
    each lists, nor the paper's figures, which no cell reads."""
    from medprompt.training.recipe import setting_differences

    lines = []
    for section in ("tasks", "methods"):
        mine, theirs = recorded.get(section) or {}, current.get(section) or {}
        for name in (name for name in mine if name in theirs):
            lines += setting_differences(mine[name], theirs[name], f"{section}.{name}.")
    common = [key for key in dict.fromkeys([*recorded, *current]) if key not in LISTED]
    return lines + setting_differences({k: recorded.get(k) for k in common}, {k: current.get(k) for k in common})


def check_protocol_folder(out: Path, protocol: dict[str, Any], extend: bool = False) -> None:
    """Refuse an --out that holds another protocol, naming what differs, unless `extend` and the two differ only in
    which tasks, methods, shots, subsets or seeds they list (or the paper's figures)."""
    from medprompt.common.config import read_yaml
    from medprompt.common.errors import MedpromptError
    from medprompt.common.output_paths import check_output_folder
    from medprompt.training.recipe import setting_differences

    check_output_folder(out, "--out")
    recorded = out / "protocol.yaml"
    if not recorded.is_file():
        return
    before = read_yaml(recorded)
    differences = setting_differences(before, protocol)
    conflicts = cell_conflicts(before, protocol) if differences else []
    if differences and (conflicts or not extend):
        raise MedpromptError(
            f"{recorded}: another protocol ran here ({'; '.join((conflicts or differences)[:3])}); use another "
            "--out, or the same protocol and settings to resume"
            + ("" if conflicts else ", or --extend to add its tasks, methods, shots, subsets or seeds here"))


def record_protocol(out: Path, protocol: dict[str, Any]) -> None:
    """Write the protocol into --out (after check_protocol_folder): what a rerun or --extend is checked against."""
    from medprompt.common.atomic import atomic_path
    from medprompt.common.config import dump_config

    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "protocol.yaml") as tmp:
        dump_config(protocol, tmp)


def cell_slices(path: Path, data: Path):
    """A cell's per-slice scores with each slice's patient (cells scored before the column was kept take it from
    the task's prepared manifest)."""
    import pandas as pd

    from medprompt.common.errors import MedpromptError

    table = pd.read_csv(path, dtype={"slice_id": str, "case": str, "patient": str})
    if "patient" in table:
        return table
    if not (data / "manifest.csv").is_file():
        raise MedpromptError(f"{path}: no patient column, and its task's data {data} is not prepared here")
    patients = pd.read_csv(data / "manifest.csv", dtype=str, usecols=["case", "patient"]).drop_duplicates("case")
    return table.merge(patients, on="case", how="left")


def without_locations(protocol: dict[str, Any]) -> dict[str, Any]:
    """The protocol less where its data lies on this machine: what two folders must share to merge."""
    tasks = {name: {k: v for k, v in spec.items() if k != "data"} for name, spec in protocol["tasks"].items()}
    return {**{k: v for k, v in protocol.items() if k != "data"}, "tasks": tasks}


def copy_if_present(source: Path, target: Path) -> None:
    """Copy a file, written atomically, when it exists (a cell without 3D scores has no cases.csv)."""
    from medprompt.common.atomic import atomic_path

    if source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)


def check_merge_sources(protocol: dict[str, Any], sources: list[Path]) -> None:
    """Refuse a --merge folder that holds no benchmark, or a protocol that sets a cell both have otherwise (data
    locations aside)."""
    from medprompt.common.config import read_yaml
    from medprompt.common.errors import MedpromptError

    for source in sources:
        recorded = source / "protocol.yaml"
        if not recorded.is_file():
            raise MedpromptError(f"--merge {source}: no protocol.yaml there (not a benchmark's --out or --archive)")
        conflicts = cell_conflicts(without_locations(read_yaml(recorded)), without_locations(protocol))
        if conflicts:
            raise MedpromptError(f"--merge {source}: another protocol ran there ({'; '.join(conflicts[:3])})")


def merge_cells(out: Path, protocol: dict[str, Any], sources: list[Path]) -> int:
    """Copy into --out the finished cells of checked `sources` that it lacks; how many were copied."""
    copied = 0
    for source in sources:
        for cell in protocol_cells(protocol):
            origin, target = source / "cells" / cell.key, out / "cells" / cell.key
            if not (origin / CELL_DONE).is_file() or (target / CELL_DONE).is_file():
                continue
            shutil.rmtree(target, ignore_errors=True)
            for name in RESULT_FILES:
                copy_if_present(origin / name, target / name)
            copied += 1
    return copied


def archive(out: Path, folder: Path, protocol: dict[str, Any]) -> None:
    """Copy the protocol (less this machine's data locations), the tables and the results of each of its finished
    cells from --out into `folder` (not those of cells that an earlier protocol listed there)."""
    from medprompt.common.atomic import atomic_path
    from medprompt.common.config import dump_config, read_yaml

    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "protocol.yaml") as tmp:
        dump_config(without_locations(read_yaml(out / "protocol.yaml")), tmp)
    files = [out / name for name in TABLES if name != "protocol.yaml"]
    for cell in protocol_cells(protocol):
        if (out / "cells" / cell.key / CELL_DONE).is_file():
            files += [out / "cells" / cell.key / name for name in RESULT_FILES]
    for path in files:
        copy_if_present(path, folder / path.relative_to(out))


def relative_status(status: str, cell: str) -> str:
    """A row's status naming its cell's folder from the benchmark folder, wherever the cell ran: tables that name
    no machine's path."""
    return re.sub(rf"\S*(?=cells/{re.escape(cell)})", "", status)


def write_summaries(out: Path, protocol: dict[str, Any], rows: list[dict[str, Any]], pending: int = 0) -> str:
    """runs.csv, summary.csv, summary.md and summary.png from the finished cells' rows; the Markdown table, which
    says how many cells are `pending` (not run yet)."""
    import pandas as pd

    from medprompt.common.atomic import atomic_path
    from medprompt.evaluation.summary import summarise, summary_markdown, summary_plot

    extra = [c for c in dict.fromkeys(k for row in rows for k in row) if c not in RUN_COLUMNS]  # a dataset's scores
    runs = pd.DataFrame(rows).reindex(columns=RUN_COLUMNS + extra)
    runs["status"] = [relative_status(row.status, row.cell) for row in runs.itertuples()]
    tables = {}
    for row in rows:
        path = out / "cells" / row["cell"] / "slices.csv"
        if path.is_file():
            tables[row["cell"]] = cell_slices(path, task_data(out, protocol, row["task"]))
    bounds = {task: name for task in protocol["tasks"] for name, spec in protocol["methods"].items()
              if spec.get("bound")}
    departures = {name: spec.get("departures", "") for name, spec in protocol["methods"].items()}
    summary = summarise(runs, tables, bounds, protocol.get("paper") or {}, departures, extra)
    markdown = summary_markdown(summary, runs[runs.status != "ok"])
    if pending:
        markdown += (f"\nA partial table: {pending} of the protocol's {pending + len(rows)} cells are not run yet "
                     "(the same command without --only runs them).\n")
    for name, write in (("runs.csv", lambda p: runs.to_csv(p, index=False)),
                        ("summary.csv", lambda p: summary.to_csv(p, index=False, float_format="%.4f")),
                        ("summary.md", lambda p: p.write_text(markdown)),
                        ("summary.png", lambda p: summary_plot(summary, p))):
        with atomic_path(out / name) as tmp:
            write(tmp)
    return markdown


def timed_once(fn) -> float:
    """Seconds of one call of `fn`, after a first call that warms it up."""
    fn()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_seconds(backbone, cfg: dict[str, Any], batch: int) -> float:
    """Seconds of one training step of the method `cfg` trains on `batch` slices here (forward, backward, update,
    on what it reads: a method that runs the encoder in its step costs its encoder's time); 0 for nothing to learn."""
    import numpy as np
    import torch

    from medprompt.common.device import autocast
    from medprompt.methods import build_method
    from medprompt.methods.slice_inputs import image_slices

    method = build_method(backbone, cfg)
    learned = [p for p in method.parameters() if p.requires_grad]
    if not learned:
        return 0.0
    images = np.random.default_rng(0).integers(0, 256, (batch, 256, 256), dtype=np.uint8)
    slices = image_slices(backbone, images, method.reads)
    if method.references:
        method.setup(slices, torch.ones(batch, 1, 256, 256, device=backbone.device))
    optimizer = torch.optim.Adam(learned)

    def step() -> None:
        with autocast(backbone.device):
            loss = method(slices).float().sigmoid().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return timed_once(step)


def train_slices(out: Path, protocol: dict[str, Any], task: str) -> int | None:
    """The task's train slices with the structure, once its data is prepared in `out` (else None)."""
    from medprompt.data.dataset import read_manifest

    path = task_data(out, protocol, task) / "manifest.csv"
    if not path.is_file():
        return None
    manifest = read_manifest(path)
    return int(((manifest.split == "train") & manifest.has_target).sum())


def estimate(cells: list[Cell], protocol: dict[str, Any], backbone, folders: list[Path]) -> str:
    """Each cell's training steps' time from a step measured on this machine, and the encoder's speed; the cells
    finished in one of `folders` (--out, then the --merge folders) cost nothing."""
    import torch

    from medprompt.training.recipe import TrainConfig, load_train_config

    images = torch.rand(1, 256, 256)
    encode_s = timed_once(lambda: backbone.encode(images))
    steps: dict[tuple[str, int], float] = {}
    available: dict[str, int | None] = {}
    lines, total = [], 0.0
    for cell in cells:
        spec = protocol["methods"][cell.method]
        if any((folder / "cells" / cell.key / CELL_DONE).is_file() for folder in folders):
            lines.append(f"  {cell.key:<55}    finished")
            continue
        if "from" in spec:
            lines.append(f"  {cell.key:<55}    no training (predicts {spec['from']}'s run again)")
            continue
        cfg = load_train_config(spec["method"], spec.get("config"), [*protocol.get("set", []), *spec.get("set", [])])
        if cell.shots == "all" and cell.task not in available:
            available[cell.task] = train_slices(folders[0], protocol, cell.task)
        shots = int(cell.shots) if cell.shots != "all" else available[cell.task] or 10
        seconds = 0.0
        if not spec.get("bound"):
            timed = (cell.method, min(shots, cfg["batch_size"]))
            if timed not in steps:
                steps[timed] = step_seconds(backbone, cfg, timed[1])
            epochs = TrainConfig.from_mapping(cfg).epochs_for(shots)
            seconds = epochs * math.ceil(shots / cfg["batch_size"]) * steps[timed]
        total += seconds
        lines.append(f"  {cell.key:<55} ~{seconds / 60:5.1f} min training")
    measured = ", ".join(f"{m} {s:.2f} s a step of {b}" for (m, b), s in steps.items())
    return (f"{len(cells)} cells (here: {measured or 'no step timed'}; the encoder {encode_s:.2f} s "
            "a slice; `all` shots: the train split's slices with the structure, counted as 10 until the task's "
            "data is prepared in --out):\n" + "\n".join(lines)
            + f"\ntotal ~{total / 60:.0f} min of training steps, plus embedding each task's data once (the encoder's "
            "time a slice), the val split's scoring and the predictions")


def cmd_benchmark(args: argparse.Namespace) -> None:
    from tqdm.auto import tqdm

    from medprompt.backbones import load_backbone
    from medprompt.common.device import resolve_device
    from medprompt.common.distributed import process_group
    from medprompt.data.dataset import PreprocessedDataset

    protocol = load_protocol(args.protocol, args.data, args.overrides)
    cells = protocol_cells(protocol)
    chosen = chosen_cells(cells, args.only)
    out = Path(args.out)
    group = process_group()
    backbone = load_backbone(protocol.get("backbone"), protocol.get("checkpoint"),
                             group.device(resolve_device(args.device)), engine=args.engine)
    if args.dry_run:
        if group.is_main:
            check_merge_sources(protocol, args.merge)
            check_protocol_folder(out, protocol, args.extend)
            print(estimate(chosen, protocol, backbone, [out, *args.merge]))
        return
    if group.is_main:  # the folder, the merged cells, the preprocessing and the embeddings, once for the group
        check_merge_sources(protocol, args.merge)
        check_protocol_folder(out, protocol, args.extend)
        record_protocol(out, protocol)
        if args.merge:
            merged = merge_cells(out, protocol, args.merge)
            print(f"merged {merged} finished cells from {', '.join(map(str, args.merge))}")
        for task in dict.fromkeys(cell.task for cell in unfinished(chosen, out)):
            prepare_task(out, protocol, task, backbone)
    group.wait_for_all()
    check_protocol_folder(out, protocol)
    chosen = unfinished(chosen, out)
    group.wait_for_all()  # every process has the same cells to share before any of them finishes one
    datasets = {task: PreprocessedDataset(task_data(out, protocol, task)) for task in {cell.task for cell in chosen}}
    units: dict[Cell, list[Cell]] = {}  # a run and the cells that read it stay in one process
    for cell in chosen:
        units.setdefault(training_cell(cell, protocol), []).append(cell)
    mine = [cell for unit in group.share(list(units)) for cell in units[unit]]
    for cell in tqdm(mine, desc=group.label("benchmark"), unit="cell"):
        run_cell(cell, protocol, datasets[cell.task], backbone, out)
    group.wait_for_all()
    if group.is_main:
        done = [out / "cells" / cell.key / CELL_DONE for cell in cells]
        rows = [json.loads(path.read_text()) for path in done if path.is_file()]
        print(write_summaries(out, protocol, rows, pending=len(cells) - len(rows)), end="")
        if args.archive:
            archive(out, args.archive, protocol)


def add_benchmark(p: argparse.ArgumentParser) -> None:
    p.add_argument("protocol", metavar="PROTOCOL",
                   help="a bundled protocol (smoke, table1; `medprompt config` lists them as benchmarks/NAME) or a "
                        "YAML file")
    p.add_argument("--out", type=Path, required=True, help="output folder; a rerun with it skips finished cells")
    p.add_argument("--data", type=Path, default=None, help="the folder holding the raw downloads (default: the "
                   "protocol's `data`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a protocol value (repeatable), e.g. --set \"seeds=[0,1,2]\" --set \"set=[epochs=30]\"")
    p.add_argument("--only", action="append", default=[], metavar="PATTERN",
                   help="run only the cells of these tasks or task/method pairs (repeatable, shell-style: acdc_lv, "
                        "'acdc_*/unet'); the tables then cover the finished cells and say how many are not run yet")
    p.add_argument("--extend", action="store_true",
                   help="let --out, which holds this protocol with fewer tasks, methods, shots, subsets or seeds, "
                        "take the protocol as given: its finished cells are kept and the new ones run")
    p.add_argument("--merge", action="append", default=[], type=Path, metavar="FOLDER",
                   help="first copy in the finished cells of FOLDER (another --out or --archive whose protocol sets "
                        "the cells both have alike; its data may lie elsewhere) that --out lacks (repeatable): one "
                        "table from parts run apart")
    p.add_argument("--archive", type=Path, default=None, metavar="FOLDER",
                   help="then also copy the protocol, the tables and each finished cell's scores (no weights or "
                        "predictions) into FOLDER: small enough to commit, and --merge reads it back")
    p.add_argument("--dry-run", action="store_true", help="list the cells (those finished in --out or a --merge "
                   "folder marked) and estimate their training time, run nothing")
    add_device(p)
    add_engine(p)


VERBS = [
    Verb("benchmark", cmd_benchmark, add_benchmark,
         "Run a protocol of runs (the paper's Table 1, or your own) and write its tables.",
         "each cell is an ordinary train / predict / evaluate run on the task's test split; a rerun skips finished\n"
         "cells and redoes a killed one; runs.csv has one row per run, summary.md the table with 95% intervals.\n"
         "under torchrun the cells are shared out among the processes, each on its own GPU (CUDA) or on the CPU:\n"
         "         torchrun --nproc_per_node 4 -m medprompt benchmark table1 --out bench/table1\n"
         "example: medprompt benchmark smoke --out bench/smoke\n"
         "         medprompt benchmark table1 --out bench/table1 --data ~/data --dry-run\n"
         "         medprompt benchmark table1 --out bench/table1 --only acdc_lv   (one task now, the rest later)\n"
         "         medprompt benchmark table1 --out bench/more --merge bench/table1 --archive results/table1\n"
         "         medprompt benchmark table1 --out bench/table1 --set \"seeds=[0,1,2]\" --extend   (more runs)\n"
         "         medprompt config benchmarks/table1      (the protocol's keys)"),
]
