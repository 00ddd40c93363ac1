"""The exported model's `README.md`: a Hub model card whose YAML header carries the library, license, tags, base
model and the run's measured metrics, and whose body says what the model segments, from what, and its limits."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pandas as pd
import yaml

from medprompt.common.errors import MedpromptError
from medprompt.methods.run_dir import target_name


@dataclass(frozen=True)
class Metric:
    """One measured figure for the card's model-index: `kind` is the Hub's metric type (dice, hd95)."""

    kind: str
    name: str
    value: float


def read_metrics(path: str | os.PathLike) -> list[Metric]:
    """Mean Dice and HD95 from a `medprompt evaluate` CSV: per-slice scores (slices with the structure) or
    per-volume scores in mm."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise MedpromptError(f"--metrics {path}: not readable as a CSV ({exc})") from None
    if "dice" not in table.columns:
        raise MedpromptError(f"--metrics {path}: no 'dice' column; give a CSV written by `medprompt evaluate`")
    if "has_target" in table.columns:
        table = table[table.has_target.astype(bool)]
        where = f"2D, mean over {len(table)} slices with the structure"
        hd95, unit = "hd95", str(table.hd95_unit.iloc[0]) if "hd95_unit" in table.columns and len(table) else "px"
    else:
        where, hd95, unit = f"3D, mean over {len(table)} volumes", "hd95_mm", "mm"
    if table.empty:
        raise MedpromptError(f"--metrics {path}: no scored slice or volume in it")
    metrics = [Metric("dice", f"Dice ({where})", round(float(table.dice.mean()), 4))]
    if hd95 in table.columns and table[hd95].notna().any():
        metrics.append(Metric("hd95", f"HD95 in {unit} ({where})", round(float(table[hd95].mean()), 2)))
    return metrics


def model_card(config: dict[str, Any], name: str, license_id: str, training_boxes: int,
               metrics: list[Metric]) -> str:
    """The card's text for an exported run (`config` is the run's config, without paths)."""
    dataset, backbone, train = config["dataset"], config["backbone"], config["train"]
    target = target_name(config)
    header: dict[str, Any] = {
        "library_name": "medprompt", "license": license_id, "pipeline_tag": "image-segmentation",
        "tags": ["medical-imaging", "segmentation", "few-shot", "box-supervision", "medprompt", train["method"],
                 backbone["id"]],
        "base_model": backbone["id"], "base_model_sha256": backbone["checkpoint_sha256"],
    }
    if metrics:
        header["model-index"] = [{"name": name, "results": [{
            "task": {"type": "image-segmentation", "name": f"{target} segmentation"},
            "dataset": {"name": str(dataset.get("name")), "type": str(dataset.get("name"))},
            "metrics": [{"type": m.kind, "name": m.name, "value": m.value} for m in metrics]}]}]
    schedule = f"{train.get('epochs')} epochs"
    if train.get("max_steps"):
        schedule += f", at most {train['max_steps']} steps"
    measured = "\n".join(f"| {m.name} | {m.value} |" for m in metrics) or "No evaluation was exported with it."
    table = f"| metric | value |\n|---|---|\n{measured}" if metrics else measured
    return f"""---
{yaml.safe_dump(header, sort_keys=False).strip()}
---

# {name}

Segments **{target}** (label {dataset['target_label']}) automatically, with no box and no label at prediction
time, on images like those it was trained on ({dataset.get('name')}: {', '.join(dataset.get('source_kinds') or ['images'])}).
It is a `{train['method']}` prompt learner on the frozen `{backbone['id']}` backbone (weights sha256
`{backbone['checkpoint_sha256']}`), trained with medprompt from {training_boxes} tight bounding boxes
({train.get('shots')} slices, supervision `{train.get('supervision')}`, {schedule}, seed
{train.get('seed')}); no mask was read for training.

## Measured

{table}

## Use

With medprompt installed (its weights for `{backbone['id']}` come with it):

```bash
medprompt predict THIS_FOLDER scan.nii.gz --out predictions/   # NIfTI, MHD, PNG or a DICOM series folder
```

The folder can be renamed and moved; `medprompt predict` also takes the Hub's download cache of it
(`models--OWNER--NAME`). It refuses to run on backbone weights other than the ones above.

## Files

- `config.json`: the method and its settings, the backbone and its checksum, the preprocessing its inputs
  go through, the target's name and label, and the checksum of `model.safetensors`.
- `model.safetensors`: the learned tensors of the method only (the backbone is not included).
- `test_tensors.safetensors`: a synthetic input slice (no patient data) and the probabilities this model
  gave it when exported.

## Limits

Learned from {training_boxes} boxes on one dataset: on images from another scanner, protocol or population,
check its masks before using them. Slices far from the training boxes' appearance (the ends of a volume, a
small cross-section) are where it fails first. Not a medical device; for research use.
"""
