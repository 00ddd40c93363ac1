"""The HDF5 embedding cache `DATASET/embeddings/<backbone-id>.h5`: encode once, train many times.

Layout: `embeddings` [N,256,64,64] float16 (one chunk per slice), `slice_id` [N],
`image_pe` [256,64,64] once, `written` [N] flags, and provenance attributes
(backbone id, checkpoint sha256, input size and resize policy, preprocessing
fingerprint, package version, encoder batch size, the engine that encoded it and its
measured difference from PyTorch). The file is built under `<id>.h5.partial`, one
batch at a time, so an interrupted run loses at most the batch in flight and a
rerun continues (with the batch size it started with, so every slice is encoded
alike); it is renamed to its final name when every slice is written. Under
torchrun each process encodes its share of the batches into `<id>.h5.partial.batches/`
(one file per batch, written atomically) and the first process gathers them into
the partial file, so the cache equals one process's and a group that dies resumes. A
cache whose provenance differs from the current checkpoint or preprocessing is
refused, and so is one written by an engine that does not agree with the current
one within the engines' tolerance (a reduced-precision engine agrees with no other).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from medprompt import __version__
from medprompt.backbones import Backbone
from medprompt.backbones.engines import TOLERANCE
from medprompt.common.atomic import atomic_path, partial_path
from medprompt.common.device import autocast, default_batch_size
from medprompt.common.distributed import Group
from medprompt.common.errors import MedpromptError
from medprompt.common.locking import exclusive
from medprompt.common.output_paths import check_output_folder
from medprompt.data.dataset import PreprocessedDataset, read_rows

IN_MEMORY_LIMIT_BYTES = 4 * 1024**3


def cache_path(dataset_dir: str | os.PathLike, backbone_id: str) -> Path:
    """Where the cache of a backbone lives inside a dataset directory."""
    return Path(dataset_dir) / "embeddings" / f"{backbone_id}.h5"


def provenance(dataset: PreprocessedDataset, backbone: Backbone) -> dict[str, str | int]:
    """The attributes that must match for a cache to be reused."""
    return {
        "backbone_id": backbone.backbone_id,
        "checkpoint_sha256": backbone.checkpoint_sha256,
        "input_size": int(backbone.input_size),
        "input_resize": backbone.spec.resize,
        "preprocessing_fingerprint": dataset.fingerprint,
    }


def check_provenance(path: Path, attrs: h5py.AttributeManager, expected: dict[str, str | int]) -> None:
    """Refuse a cache made from another checkpoint, backbone or preprocessing."""
    for key, want in expected.items():
        have = attrs.get(key)
        if isinstance(have, bytes):
            have = have.decode()
        if isinstance(have, np.generic):
            have = have.item()
        if have != want:
            raise MedpromptError(
                f"{path}: made with {key}={have!r}, but the current {key} is {want!r}; "
                "it cannot be reused (delete it, or run `medprompt embed --overwrite`)"
            )


def check_engine(path: Path, attrs: h5py.AttributeManager, backbone: Backbone) -> None:
    """Refuse a cache written by another engine unless both agree with PyTorch within `TOLERANCE` (a cache that
    records no engine was written by PyTorch)."""
    engine = backbone.engine
    written_by = attrs.get("engine", "torch")
    written_by = written_by.decode() if isinstance(written_by, bytes) else str(written_by)
    diff = float(attrs.get("engine_max_diff", 0.0))
    if written_by == engine.name or (diff <= TOLERANCE and engine.agrees):
        return
    raise MedpromptError(
        f"{path}: encoded by the {written_by} engine (max difference from PyTorch {diff:.1e}), which does not agree "
        f"with the current {engine.name} engine ({engine.max_diff:.1e}) within {TOLERANCE:.0e}; use --engine "
        f"{written_by}, or re-encode with --overwrite"
    )


def build_cache(
    dataset: PreprocessedDataset,
    backbone: Backbone,
    batch_size: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    group: Group = Group(),
) -> Path:
    """Encode every slice of the dataset into the cache, resuming a partial file when it matches.

    `batch_size` defaults to the device's (`default_batch_size`). In a `group` of several processes
    (torchrun) each member encodes its share of the batches and the main member assembles the one cache.
    """
    if batch_size is not None and batch_size < 1:
        raise MedpromptError(f"--batch-size {batch_size}: must be at least 1")
    final = cache_path(dataset.root, backbone.backbone_id)
    check_output_folder(final.parent, "embedding cache folder")
    tmp = partial_path(final)
    with group.main_holds(exclusive(dataset.root, "medprompt embed")):
        decided = _prepare(final, dataset, backbone, batch_size, overwrite) if group.is_main else None
        batch_size = group.from_main(decided)
        if batch_size is None:  # the cache is complete and matches
            return final
        if group.size == 1:
            _fill(tmp, dataset, backbone, batch_size, progress)
        else:
            _fill_shards(tmp, dataset, backbone, batch_size, progress, group)
            group.wait_for_all()
        if group.is_main:
            with _open(tmp, "r+") as f:
                missing = _merge_shards(f, tmp)
            if missing:
                raise MedpromptError(f"{tmp}: {missing} slices were not encoded; run embed again to finish it")
            os.replace(tmp, final)  # an --overwrite keeps the old cache until the new one is complete
    return final


def _prepare(final: Path, dataset: PreprocessedDataset, backbone: Backbone, batch_size: int | None,
             overwrite: bool) -> int | None:
    """Check a complete cache (None: nothing to encode), or start or check the partial file, gathering what an
    interrupted group of processes left beside it; the batch size to encode with."""
    expected = provenance(dataset, backbone)
    if final.exists() and not overwrite:
        with _open(final, "r") as f:
            check_provenance(final, f.attrs, expected)
            check_engine(final, f.attrs, backbone)
        return None
    tmp = partial_path(final)
    if overwrite:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(_shard_folder(tmp), ignore_errors=True)
    batch_size = batch_size or default_batch_size(backbone.device)
    if tmp.exists():
        with _open(tmp, "r+") as f:
            check_provenance(tmp, f.attrs, expected)
            check_engine(tmp, f.attrs, backbone)
            started = int(f.attrs.get("batch_size", batch_size))
            _merge_shards(f, tmp)
        if started != batch_size:
            warnings.warn(f"{tmp}: resuming with the batch size it was started with ({started}), not {batch_size}, "
                          "so that every slice is encoded alike")
            batch_size = started
    else:
        shutil.rmtree(_shard_folder(tmp), ignore_errors=True)
        _create(tmp, dataset, backbone, {**expected, "batch_size": batch_size, "engine": backbone.engine.name,
                                         "engine_max_diff": backbone.engine.max_diff})
    return batch_size


def _open(path: Path, mode: str) -> h5py.File:
    try:
        return h5py.File(path, mode)
    except OSError as exc:
        raise MedpromptError(f"{path}: not a readable HDF5 embedding cache ({exc}); delete it and rerun embed") from None


def _create(path: Path, dataset: PreprocessedDataset, backbone: Backbone, expected: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(dataset)
    channels, (h, w) = backbone.image_pe.shape[1], backbone.embedding_size
    with h5py.File(path, "w") as f:
        f.create_dataset("embeddings", shape=(n, channels, h, w), dtype=np.float16, chunks=(1, channels, h, w))
        f.create_dataset("slice_id", data=np.asarray(dataset.manifest.slice_id, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("image_pe", data=backbone.image_pe[0].detach().cpu().numpy().astype(np.float32))
        f.create_dataset("written", shape=(n,), dtype=np.uint8, fillvalue=0)
        f.attrs.update(expected)
        f.attrs["package_version"] = __version__


def _pending_batches(path: Path, n: int, batch_size: int) -> list[int]:
    """The starts of the batches not yet written; batch boundaries are fixed so a resumed file equals a fresh one."""
    with h5py.File(path, "r") as f:
        written = f["written"][:].astype(bool)
    return [s for s in range(0, n, batch_size) if not written[s : s + batch_size].all()]


def _encode(dataset: PreprocessedDataset, backbone: Backbone, start: int, stop: int) -> np.ndarray:
    """The float16 embeddings of slices start..stop-1."""
    images = torch.from_numpy(dataset.images(np.arange(start, stop)))
    with autocast(backbone.device):
        embeddings = backbone.encode(images)
    return embeddings.float().cpu().numpy().astype(np.float16)


def _fill(path: Path, dataset: PreprocessedDataset, backbone: Backbone, batch_size: int, progress: bool) -> None:
    """Encode the batches not yet written into the partial file, one flushed batch at a time."""
    n = len(dataset)
    starts = _pending_batches(path, n, batch_size)
    bar = tqdm(total=n, initial=n - sum(min(batch_size, n - s) for s in starts), unit="slice",
               desc=f"embed {backbone.backbone_id}", disable=not progress)
    with h5py.File(path, "r+") as f:
        for start in starts:
            stop = min(start + batch_size, n)
            f["embeddings"][start:stop] = _encode(dataset, backbone, start, stop)
            f["written"][start:stop] = 1
            f.flush()
            bar.update(stop - start)
    bar.close()


def _shard_folder(partial: Path) -> Path:
    """Where the members of a group leave their encoded batches, one file each, for the main member to gather."""
    return partial.with_name(partial.name + ".batches")


def _fill_shards(path: Path, dataset: PreprocessedDataset, backbone: Backbone, batch_size: int, progress: bool,
                 group: Group) -> None:
    """This member's share of the batches not yet written, each saved atomically beside the partial file (HDF5
    takes one writer), so a member that dies loses at most its batch in flight."""
    n = len(dataset)
    mine = group.share(_pending_batches(path, n, batch_size))
    folder = _shard_folder(path)
    folder.mkdir(exist_ok=True)
    bar = tqdm(total=sum(min(batch_size, n - s) for s in mine), unit="slice", disable=not progress,
               desc=group.label(f"embed {backbone.backbone_id}"))
    for start in mine:
        stop = min(start + batch_size, n)
        with atomic_path(folder / f"{start:09d}.npy") as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, _encode(dataset, backbone, start, stop))
        bar.update(stop - start)
    bar.close()


def _merge_shards(f: h5py.File, partial: Path) -> int:
    """Write the batches that members of a group saved beside the open `partial` file into it, and remove them
    once it is flushed (a merge cut short is merged again); the number of slices still to encode."""
    folder = _shard_folder(partial)
    if folder.is_dir():
        for shard in sorted(folder.glob("*.npy")):
            start = int(shard.stem)
            embeddings = np.load(shard)
            f["embeddings"][start : start + len(embeddings)] = embeddings
            f["written"][start : start + len(embeddings)] = 1
        f.flush()
        shutil.rmtree(folder, ignore_errors=True)
    return int((f["written"][:] == 0).sum())


class EmbeddingCache:
    """Read access to a complete, validated cache."""

    def __init__(self, dataset: PreprocessedDataset, backbone_id: str, checkpoint_sha256: str):
        self.path = cache_path(dataset.root, backbone_id)
        if not self.path.exists():
            if partial_path(self.path).exists():
                hint = " (an interrupted embed left a .partial file; rerun it)"
            else:
                others = sorted(p.stem for p in self.path.parent.glob("*.h5"))
                hint = f" (caches here: {', '.join(others)}; use the --backbone/--checkpoint they were made with)" if others else ""
            raise MedpromptError(f"{self.path}: no embedding cache{hint}; run `medprompt embed {dataset.root}` first")
        with _open(self.path, "r") as f:
            check_provenance(
                self.path,
                f.attrs,
                {"backbone_id": backbone_id, "checkpoint_sha256": checkpoint_sha256,
                 "preprocessing_fingerprint": dataset.fingerprint},
            )
            ids = f["slice_id"].asstr()[:]
            if list(ids) != list(dataset.manifest.slice_id):
                raise MedpromptError(f"{self.path}: its slice_id list differs from {dataset.manifest_path}")
            self.image_pe = torch.from_numpy(f["image_pe"][:]).unsqueeze(0)
            self.shape = f["embeddings"].shape

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Embeddings [len(rows),256,64,64] float16 for manifest row positions (sorted runs read as slices)."""
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.float16)
        with h5py.File(self.path, "r") as f:
            out[order] = read_rows(f["embeddings"], rows[order])
        return out

    def fits_in_memory(self, count: int) -> bool:
        """Whether `count` embeddings are small enough to hold in memory."""
        return count * int(np.prod(self.shape[1:])) * 2 <= IN_MEMORY_LIMIT_BYTES
