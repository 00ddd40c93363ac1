"""Every documented command runs: each `medprompt ...` line of every fenced bash block of the README and docs/,
in document order, in one working folder, through the installed console script, as a user would type it;
each `torchrun ... -m medprompt ...` line too, with two processes on the CPU.

The pipeline block runs as written on the project's real samples (its learned segmenters are scored); every
other `train` and `demo` line runs one epoch (`--epochs 1` appended), since what is checked there is that the
command works on the real backbone, not what it reaches. The "Your own images" block runs on generated volumes
named as the README names them. A line whose comment says `exit 2` must end in one line of refusal; every other
must exit 0; none may print a traceback.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from dicom_files import write_series
from helpers import SHARED_DATA
from medprompt.data.boxes import boxes_from_mask
from preprocessing.phantoms import acdc_volume

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PIPELINE = re.compile(r"<!-- readme-pipeline -->\n```bash\n(.*?)```", re.S)
SHRUNK = ("train", "demo")  # verbs that run SHORT_EPOCHS outside the pipeline block
SHORT_EPOCHS = "1"  # every method ends a one-epoch run with a model on LiteMedSAM
TWO_PROCESSES = re.compile(r"(--nproc_per_node )\d+")  # a torchrun line runs with 2 CPU processes here
OWN_SCANS = ("scan_038", "scan_039", "scan_040", "scan_041", "scan_042", "scan_043")


@dataclass(frozen=True)
class Command:
    where: str            # file:line
    argv: tuple[str, ...]  # after `medprompt`
    pipeline: bool        # in the README's pipeline block: run as written
    refused: bool         # documented to exit 2
    launcher: tuple[str, ...] = ()  # torchrun's options, for a line run by torchrun

    def command_line(self) -> list[str]:
        argv = list(self.argv)
        if not self.pipeline and argv[0] in SHRUNK:
            argv += ["--epochs", SHORT_EPOCHS]
        return argv


def bash_blocks(text: str) -> list[tuple[int, str]]:
    """(line number of the first line, body) of each fenced bash block."""
    return [(text[: m.start(1)].count("\n") + 1, m.group(1)) for m in re.finditer(r"```bash\n(.*?)```", text, re.S)]


def logical_lines(body: str, first: int) -> list[tuple[int, str]]:
    """Lines with their backslash continuations joined, numbered by where they start."""
    lines, pending, start = [], "", first
    for number, line in enumerate(body.splitlines(), first):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending = ""
    return lines


def documented_commands() -> list[Command]:
    """Every `medprompt` line of every bash block, in document order, `$NAME` set by the block's assignments."""
    commands = []
    for document in DOCUMENTS:
        text = document.read_text()
        pipeline = PIPELINE.search(text)
        for first, body in bash_blocks(text):
            variables = {}
            for number, line in logical_lines(body, first):
                assignment = re.fullmatch(r"([A-Z_]+)=(\S+)", line.strip())
                if assignment:
                    variables[assignment.group(1)] = assignment.group(2)
                if not line.startswith(("medprompt ", "torchrun ")):
                    continue
                expanded = re.sub(r"\$([A-Z_]+)", lambda m: variables[m.group(1)], line)
                comment = line.partition("#")[2]
                words = shlex.split(expanded, comments=True)
                start = 0 if words[0] == "medprompt" else words.index("-m") + 1
                launcher = tuple(TWO_PROCESSES.sub(r"\g<1>2", " ".join(words[1 : start - 1])).split()) if start else ()
                commands.append(Command(f"{document.name}:{number}", tuple(words[start + 1 :]),
                                        pipeline is not None and pipeline.start(1) <= text.index(body) < pipeline.end(1),
                                        "exit 2" in comment, launcher))
    return commands


COMMANDS = documented_commands()


def write_own_scans(folder: Path, boxes_csv: Path) -> None:
    """Volumes named as the README's own-images block names them (oblique affines, label maps beside them: label
    1, the block's `liver`), a CSV of tight boxes on ten of their slices, in source pixels, and one of them as
    the DICOM series `my_dicom/series_044` beside the folder."""
    folder.mkdir()
    rows = []
    for k, name in enumerate(OWN_SCANS):
        phantom = acdc_volume(np.random.default_rng([11, k]), "ED")
        c, s = np.cos(0.2 + 0.1 * k), np.sin(0.2 + 0.1 * k)
        affine = np.eye(4)
        affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag(phantom.spacing)
        affine[:3, 3] = [-90.0, 40.0, 12.5]
        structure = (phantom.label == 3).astype(np.uint8)
        nib.save(nib.Nifti1Image(phantom.image.astype(np.float32), affine), folder / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(structure, affine), folder / f"{name}_gt.nii.gz")
        for z in range(structure.shape[2]):
            rows += [(name, z, *box) for box in boxes_from_mask(structure[:, :, z].T)]
    table = pd.DataFrame(rows, columns=["case", "slice_index", "x_min", "y_min", "x_max", "y_max"])
    table.sample(10, random_state=0).to_csv(boxes_csv, index=False)
    write_series(folder.parent / "my_dicom" / "series_044", sitk.ReadImage(str(folder / f"{OWN_SCANS[-1]}.nii.gz"),
                                                                           sitk.sitkInt16))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The folder the commands run in, with the README's `my_scans/`, `my_dicom/` and `my_boxes.csv`, and `../shared/data`
    where the README's relative paths expect it."""
    folder = tmp_path_factory.mktemp("readme") / "work"
    folder.mkdir()
    write_own_scans(folder / "my_scans", folder / "my_boxes.csv")
    (folder.parent / "shared").mkdir()
    (folder.parent / "shared" / "data").symlink_to(SHARED_DATA.resolve())
    return folder


SERVERS = ("annotate",)  # verbs that serve until stopped: started on a free port, asked for their page, stopped


def run_documented(command: Command, workdir: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("medprompt")
    if command.argv[0] in SERVERS:
        return run_server([str(script), *command.command_line(), "--port", "0", "--no-browser"], workdir)
    launcher = [sys.executable, "-m", "torch.distributed.run", *command.launcher, "-m", "medprompt"] \
        if command.launcher else [str(script)]
    with tempfile.TemporaryDirectory(prefix="readme_") as scratch:  # torchrun's own folders go with the command
        return subprocess.run([*launcher, *command.command_line()], cwd=workdir, capture_output=True,
                              encoding="utf-8", env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": scratch},
                              stdin=subprocess.DEVNULL)


def run_server(argv: list[str], workdir: Path) -> subprocess.CompletedProcess:
    """Start a serving verb, fetch the page's state from the URL it prints first, stop it: status 0 when the
    page answered, else the verb's own exit status and output."""
    server = subprocess.Popen(argv, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              encoding="utf-8", stdin=subprocess.DEVNULL)
    url = server.stdout.readline().strip()
    answered = False
    if url.startswith("http://"):
        with urllib.request.urlopen(url + "api/state", timeout=60) as response:
            answered = response.status == 200 and bool(json.loads(response.read())["cases"])
        server.terminate()
    out, err = server.communicate(timeout=60)
    return subprocess.CompletedProcess(argv, 0 if answered else server.returncode, url + out, err)


def test_the_documents_hold_the_pipeline_and_every_verb():
    assert re.search(r"^DATA=\.\./shared/data$", (ROOT / "README.md").read_text(), re.M), "the block names the samples"
    verbs = {c.argv[0] for c in COMMANDS}
    assert verbs >= {"preprocess", "embed", "train", "predict", "evaluate", "reconstruct", "demo", "config",
                     "backbones"}
    assert [c.argv[0] for c in COMMANDS if c.pipeline][:5] == ["preprocess", "embed", "train", "predict", "evaluate"]
    continued = next(c for c in COMMANDS if c.argv[:2] == ("preprocess", "folder"))
    assert "geometry.target_spacing=[1.0, 1.0]" in continued.argv  # a backslash continuation is one command


def test_the_readme_fits_on_a_screen_and_links_every_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    pages = {p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages and {page for page in pages if f"]({page})" not in readme} == set()


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the real samples (../shared/data) are absent")
@pytest.mark.parametrize("command", COMMANDS,
                         ids=[f"{c.where} {'torchrun ' if c.launcher else ''}{' '.join(c.argv[:2])}" for c in COMMANDS])
def test_documented_command_runs(command, workdir):
    result = run_documented(command, workdir)
    assert "Traceback" not in result.stderr, result.stderr
    if command.refused:
        errors = [line for line in result.stderr.splitlines() if f"medprompt {command.argv[0]}: error" in line]
        assert result.returncode == 2 and len(errors) == 1, result.stderr
    else:
        assert result.returncode == 0, f"{command.where}: medprompt {' '.join(command.argv)}\n{result.stderr[-3000:]}"


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="the real samples (../shared/data) are absent")
@pytest.mark.parametrize("dataset", ["acdc", "camus", "hc18"])
def test_the_pipeline_block_learns_a_segmenter(dataset, workdir):
    """After the commands above: each dataset's 2D metrics, written by the block's `evaluate`, show a learned
    segmenter, not an empty one."""
    scores = pd.read_csv(workdir / "metrics" / f"{dataset}_2d.csv")
    assert scores.dice[scores.has_target].mean() > 0.5
