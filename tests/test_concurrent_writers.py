"""One writer per output folder: a second `preprocess`, `embed`, `train` or `predict` into a folder another
is writing exits 2 with a line naming the running one, and the first one's files are left untouched.

The lock is held here by the test process, as a running command would hold it.
"""

import shutil

import pytest

from helpers import expect_error, tiny_backbone_args
from medprompt.backbones import embedding_cache, load_backbone
from medprompt.backbones.embedding_cache import build_cache, cache_path
from medprompt.cli.main import main
from medprompt.common.atomic import partial_path
from medprompt.common.locking import exclusive
from medprompt.data.dataset import PreprocessedDataset


def folder_state(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and
            p.name != ".medprompt.lock"}


@pytest.mark.parametrize("verb", ["preprocess", "train", "predict"])
def test_a_second_writer_into_a_folder_is_refused_naming_the_first(acdc_run, tiny_checkpoint, tmp_path, capsys, verb):
    out = tmp_path / "out"
    shutil.copytree({"preprocess": acdc_run.dataset, "train": acdc_run.run, "predict": acdc_run.predictions}[verb], out)
    argv = {"preprocess": ["preprocess", "acdc", str(acdc_run.raw), str(out), "--overwrite"],
            "train": ["train", str(acdc_run.dataset), "--out", str(out), "--resume", *tiny_backbone_args(tiny_checkpoint)],
            "predict": ["predict", str(acdc_run.run), str(acdc_run.dataset), "--out", str(out)]}[verb]
    before = folder_state(out)
    with exclusive(out, f"medprompt {verb}"):
        expect_error(capsys, argv, f"{out}: medprompt {verb} (pid ", "is writing here; let it finish")
    assert folder_state(out) == before


def test_a_second_embed_is_refused_and_an_overwrite_keeps_the_old_cache_until_complete(dataset_copy,
                                                                                        tiny_checkpoint, capsys,
                                                                                        monkeypatch):
    backbone = load_backbone("tiny_test", tiny_checkpoint)
    dataset = PreprocessedDataset(dataset_copy)
    with exclusive(dataset_copy, "medprompt embed"):
        assert main(["embed", str(dataset_copy), *tiny_backbone_args(tiny_checkpoint)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "medprompt embed (pid" in err and "is writing here" in err
    assert not cache_path(dataset_copy, "tiny_test").exists() and not partial_path(cache_path(dataset_copy, "tiny_test")).exists()

    path = build_cache(dataset, backbone, progress=False)
    before = path.read_bytes()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(embedding_cache, "_fill", killed)
    with pytest.raises(KeyboardInterrupt):
        build_cache(dataset, backbone, overwrite=True, progress=False)
    assert path.read_bytes() == before
