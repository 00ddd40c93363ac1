"""The HDF5 embedding cache: layout, provenance, refusal of mismatches, resumable writing."""

import h5py
import numpy as np
import pytest
import torch

from medprompt.backbones import load_backbone
from medprompt.backbones.embedding_cache import EmbeddingCache, build_cache, cache_path
from medprompt.common.atomic import partial_path
from medprompt.common.errors import MedpromptError
from medprompt.data.dataset import PreprocessedDataset


@pytest.fixture()
def backbone(tiny_checkpoint):
    return load_backbone("tiny_test", tiny_checkpoint)


def test_layout_and_provenance(dataset_copy, backbone):
    dataset = PreprocessedDataset(dataset_copy)
    path = build_cache(dataset, backbone, batch_size=8, progress=False)
    assert path == cache_path(dataset_copy, "tiny_test")
    with h5py.File(path, "r") as f:
        emb = f["embeddings"]
        assert emb.shape == (20, 256, 64, 64) and emb.dtype == np.float16 and emb.chunks == (1, 256, 64, 64)
        assert f["image_pe"].shape == (256, 64, 64)
        assert list(f["slice_id"].asstr()[:]) == list(dataset.manifest.slice_id)
        assert f.attrs["checkpoint_sha256"] == backbone.checkpoint_sha256
        assert f.attrs["preprocessing_fingerprint"] == dataset.fingerprint
        assert f.attrs["backbone_id"] == "tiny_test" and f.attrs["input_size"] == 256
        first = emb[3]
    expected = backbone.encode(torch.from_numpy(dataset.images([3])))[0].numpy()
    assert np.allclose(first.astype(np.float32), expected, atol=2e-2)


def test_read_any_order(dataset_copy, backbone):
    dataset = PreprocessedDataset(dataset_copy)
    build_cache(dataset, backbone, progress=False)
    cache = EmbeddingCache(dataset, "tiny_test", backbone.checkpoint_sha256)
    rows = np.array([7, 2, 3, 4, 15])
    got = cache.read(rows)
    with h5py.File(cache.path, "r") as f:
        for i, r in enumerate(rows):
            assert np.array_equal(got[i], f["embeddings"][r])


def test_interrupted_run_resumes_to_identical_content(dataset_copy, tmp_path, backbone, monkeypatch):
    dataset = PreprocessedDataset(dataset_copy)
    reference = build_cache(dataset, backbone, batch_size=4, progress=False)
    with h5py.File(reference, "r") as f:
        expected = f["embeddings"][:]
    reference.unlink()

    calls = {"n": 0}
    original = backbone.encode

    def crash_on_third(images):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(images)

    monkeypatch.setattr(backbone, "encode", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        build_cache(dataset, backbone, batch_size=4, progress=False)
    assert not reference.exists() and partial_path(reference).exists()
    with h5py.File(partial_path(reference), "r") as f:
        assert f["written"][:].sum() == 8
    with pytest.raises(MedpromptError, match="interrupted embed left a .partial file"):
        EmbeddingCache(dataset, "tiny_test", backbone.checkpoint_sha256)

    calls["n"] = -100
    with pytest.warns(UserWarning, match=r"resuming with the batch size it was started with \(4\), not 6"):
        build_cache(dataset, backbone, batch_size=6, progress=False)
    assert calls["n"] == -100 + 3  # only the 3 missing batches were encoded, 4 slices at a time
    with h5py.File(reference, "r") as f:
        assert np.array_equal(f["embeddings"][:], expected)


def test_cache_of_another_checkpoint_is_refused(dataset_copy, backbone, tmp_path):
    dataset = PreprocessedDataset(dataset_copy)
    build_cache(dataset, backbone, progress=False)
    other = backbone.state_dict()
    other["mask_decoder.iou_token.weight"] = other["mask_decoder.iou_token.weight"] + 1
    path = tmp_path / "other.pth"
    torch.save(other, path)
    other_backbone = load_backbone("tiny_test", path)
    with pytest.raises(MedpromptError, match="checkpoint_sha256.*cannot be reused"):
        build_cache(dataset, other_backbone, progress=False)
    with pytest.raises(MedpromptError, match="checkpoint_sha256"):
        EmbeddingCache(dataset, "tiny_test", other_backbone.checkpoint_sha256)


def test_cache_of_other_preprocessing_is_refused(dataset_copy, backbone):
    dataset = PreprocessedDataset(dataset_copy)
    build_cache(dataset, backbone, progress=False)
    with h5py.File(dataset.slices_path, "r+") as f:
        f["image"][0] = 255 - f["image"][0]
        del f.attrs["fingerprint"]
    with pytest.raises(MedpromptError, match="preprocessing_fingerprint"):
        EmbeddingCache(PreprocessedDataset(dataset_copy), "tiny_test", backbone.checkpoint_sha256)
