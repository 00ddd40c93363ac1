"""Outputs named after manifest data stay inside --out: a case name that is not a plain file name (`../x`, an
absolute path, a sub-folder, a hidden or empty name) is refused in one line before anything is written.

A shared dataset folder whose manifest was edited could otherwise overwrite any file the user may write.
"""

import shutil
from pathlib import Path

import pandas as pd
import pytest

from helpers import expect_error

NOT_PLAIN = ["../escaped", "/tmp/medprompt_escaped", "sub/escaped", ".escaped"]


@pytest.fixture()
def renamed_case(acdc_run, tmp_path):
    """A copy of the phantom dataset whose first case is renamed by the test."""
    copy = tmp_path / "work" / "dataset"
    shutil.copytree(acdc_run.dataset, copy)

    def rename(case: str):
        manifest = pd.read_csv(copy / "manifest.csv", dtype=str, keep_default_na=False)
        manifest.loc[manifest.case == manifest.case.iloc[0], "case"] = case
        manifest.to_csv(copy / "manifest.csv", index=False)
        return copy
    return rename


def escaped(tmp_path: Path) -> list[Path]:
    """Files the renamed case's outputs would have been written to."""
    return [*tmp_path.rglob("*escaped*"), *Path("/tmp").glob("medprompt_escaped*")]


@pytest.mark.parametrize("case", NOT_PLAIN)
def test_predict_refuses_a_manifest_case_name_that_leaves_out(acdc_run, renamed_case, tmp_path, capsys, case):
    dataset = renamed_case(case)
    expect_error(capsys, ["predict", str(acdc_run.run), str(dataset), "--out", str(tmp_path / "work" / "out")],
                 f"case name {case!r} in the manifest is not a plain file name")
    assert not (tmp_path / "work" / "out").exists() and escaped(tmp_path) == []


def test_an_empty_case_name_is_refused_naming_the_manifest_row(renamed_case, tmp_path, capsys):
    dataset = renamed_case("")
    expect_error(capsys, ["reconstruct", str(dataset), f"{dataset / 'slices.h5'}:mask", "--out",
                          str(tmp_path / "work" / "out")], f"{dataset / 'manifest.csv'}: row 2 has no case")
    assert not (tmp_path / "work" / "out").exists()


@pytest.mark.parametrize("case", NOT_PLAIN)
def test_reconstruct_refuses_a_manifest_case_name_that_leaves_out(renamed_case, tmp_path, capsys, case):
    dataset = renamed_case(case)
    expect_error(capsys, ["reconstruct", str(dataset), f"{dataset / 'slices.h5'}:mask", "--out",
                          str(tmp_path / "work" / "out")], f"case name {case!r} in the manifest is not a plain file name")
    assert not (tmp_path / "work" / "out").exists() and escaped(tmp_path) == []
