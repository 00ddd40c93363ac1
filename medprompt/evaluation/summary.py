"""A benchmark's summary: per task and method, the runs' Dice with a patient-level confidence interval.

Runs differ by the slices drawn and the initialisation; test patients differ by anatomy. The spread over runs
says how much the few shots matter; the 95% interval, by bootstrap over test patients (each patient's Dice
averaged over its test slices and over the runs), says how much the test set does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

BOOTSTRAP = 2000
COLUMNS = ["task", "method", "bound", "runs", "models", "test_slices", "test_patients", "dice_2d", "dice_2d_std", "ci_low",
           "ci_high", "fraction_of_bound", "paper", "dice_3d", "hd95_mm", "train_s", "departures"]


def bootstrap_interval(values: np.ndarray, seed: int = 0, draws: int = BOOTSTRAP) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of the mean of `values` resampled with replacement."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan"), float("nan")
    means = np.random.default_rng(seed).choice(values, size=(draws, len(values)), replace=True).mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def patient_dice(slice_tables: list[pd.DataFrame]) -> pd.Series:
    """Each test patient's 2D Dice over its slices with the structure, averaged over the runs' tables."""
    per_run = [t[t.has_target].groupby("patient").dice.mean() for t in slice_tables]
    return pd.concat(per_run, axis=1).mean(axis=1) if per_run else pd.Series(dtype=float)


def summarise(runs: pd.DataFrame, slice_tables: Mapping[str, pd.DataFrame], bound_methods: Mapping[str, str],
              paper: Mapping[str, Mapping[str, float]], departures: Mapping[str, str],
              extra: Sequence[str] = ()) -> pd.DataFrame:
    """One row per (task, method) of `runs`; `slice_tables` maps a run's `cell` to its per-slice scores (with a
    `patient` column); `bound_methods` names each task's box-prompted method; `extra` columns of `runs` (a
    dataset's own scores, such as HC18's head circumference error) are averaged over the runs with a model."""
    rows = []
    for (task, method), group in runs.groupby(["task", "method"], sort=False):
        scored = group[group.status == "ok"]
        patients = patient_dice([slice_tables[c] for c in scored.cell if c in slice_tables])
        low, high = bootstrap_interval(patients.to_numpy())
        bound = runs[(runs.task == task) & (runs.method == bound_methods.get(task, "")) & (runs.status == "ok")]
        mean = scored.dice_2d.mean() if len(scored) else float("nan")
        rows.append({
            "task": task, "method": method, "bound": method == bound_methods.get(task), "runs": len(group), "models": len(scored),
            "test_slices": int(group.test_slices.max()) if len(group) else 0, "test_patients": len(patients),
            "dice_2d": mean, "dice_2d_std": scored.dice_2d.std(ddof=0) if len(scored) > 1 else float("nan"),
            "ci_low": low, "ci_high": high,
            "fraction_of_bound": mean / bound.dice_2d.mean() if len(bound) else float("nan"),
            "paper": paper.get(task, {}).get(method, float("nan")),
            "dice_3d": scored.dice_3d.mean() if len(scored) else float("nan"),
            "hd95_mm": scored.hd95_mm.mean() if len(scored) else float("nan"),
            "train_s": group.train_s.mean(), "departures": departures.get(method, ""),
            **{column: scored[column].mean() if len(scored) else float("nan") for column in extra},
        })
    return pd.DataFrame(rows, columns=[*COLUMNS, *extra])


def _figure(value: float, digits: int = 3) -> str:
    return "-" if pd.isna(value) else f"{value:.{digits}f}"


def _title(column: str) -> str:
    """A score column's header: `hc_error_mm` -> `hc error mm`."""
    return column.replace("_", " ")


def summary_markdown(summary: pd.DataFrame, failures: pd.DataFrame) -> str:
    """The summary as a Markdown table (a spread over runs only where there are two models or more), then the runs
    that ended without a model and why."""
    extra = [c for c in summary.columns if c not in COLUMNS and summary[c].notna().any()]  # a dataset's scores
    lines = ["| task | method | runs (models) | test slices / patients | 2D Dice mean +- std | 95% CI (patients) "
             "| fraction of the bound | paper | 3D Dice | HD95 mm | "
             + "".join(f"{_title(c)} | " for c in extra) + "training s | departures |",
             "|---" * (12 + len(extra)) + "|"]
    for r in summary.itertuples(index=False):
        dice = _figure(r.dice_2d) if pd.isna(r.dice_2d_std) else f"{_figure(r.dice_2d)} +- {_figure(r.dice_2d_std)}"
        lines.append(f"| {r.task} | {r.method} | {r.runs} ({r.models}) | {r.test_slices} / {r.test_patients} | "
                     f"{dice} | {_figure(r.ci_low)}-{_figure(r.ci_high)} | "
                     f"{_figure(r.fraction_of_bound, 2)} | {_figure(r.paper)} | {_figure(r.dice_3d)} | "
                     f"{_figure(r.hd95_mm, 1)} | " + "".join(f"{_figure(getattr(r, c), 1)} | " for c in extra)
                     + f"{_figure(r.train_s, 0)} | {r.departures} |")
    if len(failures):
        lines += ["", "Runs without a model:", ""]
        lines += [f"- {r.task} / {r.method} (shots {r.shots}, subset {r.subset}, seed {r.seed}): {r.status}"
                  for r in failures.itertuples()]
    return "\n".join(lines) + "\n"


def summary_plot(summary: pd.DataFrame, path: Path) -> None:
    """Per task, each method's 2D Dice with its interval, and the box-prompted bound as a line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    tasks = list(dict.fromkeys(summary.task))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.5), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = summary[summary.task == task]
        learned, bound = rows[~rows.bound], rows[rows.bound]
        x = np.arange(len(learned))
        low = (learned.dice_2d - learned.ci_low).clip(lower=0).fillna(0)
        high = (learned.ci_high - learned.dice_2d).clip(lower=0).fillna(0)
        ax.bar(x, learned.dice_2d.fillna(0), yerr=[low, high], capsize=3, color="tab:blue")
        for value in bound.dice_2d:
            ax.axhline(value, color="tab:orange", linestyle="--", label="box-prompted bound")
        ax.set_xticks(x, learned.method, rotation=45, ha="right")
        ax.set_ylim(0, 1)
        ax.set_title(task)
        ax.set_ylabel("2D Dice")
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
