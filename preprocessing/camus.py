"""CAMUS 2D echocardiography (Leclerc et al. 2019): per-patient 2CH/4CH views at ED and ES.

Two release layouts are read: the original MetaImage one,
`patientNNNN/patientNNNN_2CH_ED.mhd` + `.raw` with `..._gt.mhd` (size (W,H,1),
anisotropic spacing e.g. 0.308 x 0.154 mm), and the NIfTI one,
`patientNNNN/patientNNNN_2CH_ED.nii.gz` with `..._gt.nii.gz`. Labels: 0
background, 1 LV endocardium, 2 myocardium, 3 left atrium. One output per
patient, view and frame, named `patientNNNN_2CH_ED`, written back in the
input's own format.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from medprompt.common.config_rules import Rule
from medprompt.data.volume_io import strip_suffix
from medprompt.evaluation.ground_truth import GroundTruthLayout
from preprocessing.cases import LoadedCase, RawCase, default_load

PATIENT_DIR = re.compile(r"^patient\d+$")
SUFFIXES = (".mhd", ".nii.gz", ".nii", ".mha")
VIEWS = ("2CH", "4CH")
FRAMES = ("ED", "ES")
RULES = {"views": Rule("words", choices=VIEWS), "frames": Rule("words", choices=FRAMES)}  # checked before any work


def find_view_file(folder: Path, stem: str) -> Path | None:
    """The first of `stem.mhd`, `stem.nii.gz`, `stem.nii`, `stem.mha` present in `folder`."""
    for suffix in SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def find_cases(raw_dir: Path, config: Mapping[str, Any]) -> tuple[list[RawCase], list[str]]:
    """Every patient folder's requested views and frames; a missing file is skipped with its reason."""
    views = [str(v).upper() for v in config["views"]]
    frames = [str(f).upper() for f in config["frames"]]
    cases, skipped = [], []
    folders = sorted((p for p in raw_dir.rglob("patient*") if p.is_dir() and PATIENT_DIR.match(p.name)), key=lambda p: p.name)
    for folder in folders:
        for view in views:
            for frame in frames:
                stem = f"{folder.name}_{view}_{frame}"
                image = find_view_file(folder, stem)
                if image is None:
                    skipped.append(f"{folder / (stem + '.mhd')}: {view} {frame} image missing (no .mhd or .nii.gz)")
                    continue
                cases.append(RawCase(stem, folder.name, frame, image, find_view_file(folder, f"{stem}_gt")))
    return cases, skipped


def load_case(raw: RawCase, config: Mapping[str, Any]) -> LoadedCase:
    """Read the view and its label map, checked against each other."""
    return default_load(raw, config)


def input_case(path: Path) -> RawCase:
    """A single unlabelled view to predict, named after its file (frame parsed from `_ED`/`_ES`)."""
    name = strip_suffix(path)
    match = re.search(r"_(ED|ES)$", name)
    return RawCase(name, name, match.group(1) if match else "", path, None, "test")


GROUND_TRUTH = GroundTruthLayout("camus", r"^patient\d{4}_[24]CH_(ED|ES)$")
