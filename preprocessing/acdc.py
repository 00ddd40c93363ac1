"""ACDC cine MRI (Bernard et al. 2018): patient folders with Info.cfg and per-frame short-axis NIfTI stacks.

Layout as downloaded: `<root>/training/patientNNN/` and `<root>/testing/patientNNN/`
(possibly under `database/`), each with `Info.cfg` (`ED: 1`, `ES: 12`, ...),
`patientNNN_frameMM.nii.gz` and `patientNNN_frameMM_gt.nii.gz` (0 background,
1 RV, 2 myocardium, 3 LV). Patients under a `testing` folder form the test split.
One output volume per patient and frame, named `patientNNN_ED` / `patientNNN_ES`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

from medprompt.common.config_rules import Rule
from medprompt.common.errors import MedpromptError
from medprompt.data.volume_io import strip_suffix
from medprompt.evaluation.ground_truth import GroundTruthLayout
from preprocessing.cases import LoadedCase, RawCase, default_load

PATIENT_DIR = re.compile(r"^patient\d+$")
FRAMES = ("ED", "ES")
RULES = {"frames": Rule("words", choices=FRAMES)}  # checked by the pipeline before any work


def read_info(path: Path) -> dict[str, str]:
    """The `key: value` lines of an ACDC Info.cfg."""
    if not path.is_file():
        raise MedpromptError(f"{path}: missing Info.cfg (needed to find the ED/ES frames)")
    info = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def frame_number(info_path: Path, frame: str) -> int:
    """The frame number of ED or ES from Info.cfg."""
    info = read_info(info_path)
    try:
        return int(float(info[frame]))
    except (KeyError, ValueError):
        raise MedpromptError(f"{info_path}: no valid '{frame}:' line (found keys {sorted(info)})") from None


def find_frame_file(folder: Path, stem: str) -> Path | None:
    """`stem.nii.gz` or `stem.nii` in `folder`, if present."""
    for suffix in (".nii.gz", ".nii"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def patient_cases(folder: Path, frames: list[str], split: str | None) -> list[RawCase]:
    """The requested frames of one patient folder."""
    cases = []
    for frame in frames:
        stem = f"{folder.name}_frame{frame_number(folder / 'Info.cfg', frame):02d}"
        image = find_frame_file(folder, stem)
        if image is None:
            raise MedpromptError(f"{folder / (stem + '.nii.gz')}: {frame} frame file missing")
        cases.append(RawCase(f"{folder.name}_{frame}", folder.name, frame, image, find_frame_file(folder, f"{stem}_gt"), split))
    return cases


def find_cases(raw_dir: Path, config: Mapping[str, Any]) -> tuple[list[RawCase], list[str]]:
    """All patient folders under `raw_dir`; a patient that cannot be read is skipped with its reason."""
    frames = [str(f).upper() for f in config["frames"]]
    cases, skipped = [], []
    folders = sorted((p for p in raw_dir.rglob("patient*") if p.is_dir() and PATIENT_DIR.match(p.name)), key=lambda p: p.name)
    for folder in folders:
        split = "test" if "testing" in folder.relative_to(raw_dir).parts else None
        try:
            cases.extend(patient_cases(folder, frames, split))
        except MedpromptError as exc:
            skipped.append(str(exc))
    return cases, skipped


def load_case(raw: RawCase, config: Mapping[str, Any]) -> LoadedCase:
    """Read the frame and its label map, checked against each other."""
    return default_load(raw, config)


def input_case(path: Path) -> RawCase:
    """A single unlabelled NIfTI volume to predict, named after its file."""
    name = strip_suffix(path)
    return RawCase(name, name, "", path, None, "test")


def frame_aliases(path: Path) -> list[str]:
    """`patientNNN_ED` / `_ES` for a `patientNNN_frameMM_gt` file whose Info.cfg names frame MM so."""
    match = re.match(r"^(patient\d+)_frame(\d+)_gt$", strip_suffix(path))
    if not match or not (path.parent / "Info.cfg").is_file():
        return []
    info = read_info(path.parent / "Info.cfg")
    return [f"{match.group(1)}_{frame}" for frame in ("ED", "ES")
            if info.get(frame, "").strip().isdigit() and int(info[frame]) == int(match.group(2))]


GROUND_TRUTH = GroundTruthLayout("acdc", r"^patient\d{3}_(ED|ES|frame\d+)$", aliases=frame_aliases)
