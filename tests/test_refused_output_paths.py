"""An output path that cannot be written ends in one line and exit 2, naming it, for every verb that writes.

The path is a file where a folder belongs, lies inside a file, or is in a folder the user may not write;
whatever was there is left as it was and nothing else is created.
"""

import os
import stat

import pytest

from helpers import backbone_args, expect_error, tiny_backbone_args
from medprompt.cli.main import main


def command(verb, acdc_run, tiny_checkpoint, out):
    """The command line of `verb` writing to `out`, on the phantom ACDC pipeline's files."""
    return {
        "preprocess": ["preprocess", "acdc", str(acdc_run.raw), str(out)],
        "train": ["train", str(acdc_run.dataset), "--out", str(out), "--epochs", "1", *backbone_args(tiny_checkpoint)],
        "predict": ["predict", str(acdc_run.run), str(acdc_run.dataset), "--out", str(out)],
        "reconstruct": ["reconstruct", str(acdc_run.dataset), f"{acdc_run.dataset / 'slices.h5'}:mask", "--out", str(out)],
        "evaluate": ["evaluate", str(acdc_run.predictions), str(acdc_run.dataset), "--out", str(out)],
        "demo": ["demo", "--out", str(out), "--epochs", "1"],
    }[verb]


VERBS = ("preprocess", "train", "predict", "reconstruct", "evaluate", "demo")


@pytest.mark.parametrize("verb", VERBS)
def test_an_output_that_is_a_file_or_lies_inside_one(acdc_run, tiny_checkpoint, tmp_path, capsys, verb):
    a_file = tmp_path / "a_file"
    a_file.write_text("mine")
    if verb != "evaluate":  # its --out is a file, replaced by a rerun
        expect_error(capsys, command(verb, acdc_run, tiny_checkpoint, a_file), str(a_file), "choose another path")
    expect_error(capsys, command(verb, acdc_run, tiny_checkpoint, a_file / "inside"), str(a_file),
                 "choose another path")
    assert a_file.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a user whose permissions are enforced")
@pytest.mark.parametrize("verb", VERBS)
def test_an_output_in_a_folder_the_user_may_not_write(acdc_run, tiny_checkpoint, tmp_path, capsys, verb):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        expect_error(capsys, command(verb, acdc_run, tiny_checkpoint, locked / "out"), f"{locked}: permission denied",
                     "choose another path")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(stat.S_IRWXU)


def test_evaluate_refuses_a_folder_where_its_csv_belongs(acdc_run, tmp_path, capsys):
    (tmp_path / "metrics.csv").mkdir()
    expect_error(capsys, command("evaluate", acdc_run, None, tmp_path / "metrics.csv"), "metrics.csv",
                 "is a folder; a file is written there, choose another path")
    assert list((tmp_path / "metrics.csv").iterdir()) == []


def test_embed_refuses_an_embeddings_path_that_is_a_file(embedded, tiny_checkpoint, capsys):
    (embedded / "embeddings").rename(embedded / "moved")
    (embedded / "embeddings").write_text("mine")
    expect_error(capsys, ["embed", str(embedded), *tiny_backbone_args(tiny_checkpoint)],
                 f"embedding cache folder {embedded / 'embeddings'}: is a file")
    assert (embedded / "embeddings").read_text() == "mine"


def test_an_existing_output_file_is_replaced_by_a_rerun(acdc_run, tmp_path):
    metrics = tmp_path / "metrics.csv"
    for _ in range(2):
        assert main(command("evaluate", acdc_run, None, metrics)) == 0
    assert metrics.read_text().startswith("slice_id,") and not list(tmp_path.glob("*.partial"))
