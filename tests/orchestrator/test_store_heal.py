"""Store bit rot is healed: flipped bytes (size and mtime unchanged), truncation and a deleted
manifest all make the next extraction recompute the entry, and the data read back is the same."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from orchestrator.datasets import get_dataset
from orchestrator.extract import extract_split_report
from orchestrator.store import EmbeddingStore
from orchestrator.store.io import ChecksumError
from tests.orchestrator.test_extract_fakes import FakeBackbone

TINY = {"train_clips": 6, "valid_clips": 2, "test_clips": 2, "clip_seconds": 1.0}


def flip_in_place(path: Path, nbytes: int = 4096) -> None:
    """Flip bytes inside the file without changing its size or mtime (what bit rot looks like)."""
    st = os.stat(path)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(max(0, st.st_size - nbytes - 8))
        chunk = bytearray(f.read(nbytes))
        f.seek(max(0, st.st_size - nbytes - 8))
        f.write(bytes(b ^ 0xFF for b in chunk))
    os.chmod(path, st.st_mode)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size and os.stat(path).st_mtime_ns == st.st_mtime_ns


def truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.stat(path).st_size // 2)


def delete_manifest(entry: Path) -> None:
    (entry / "manifest.json").unlink()


@pytest.mark.parametrize("fault", ["flip", "truncate", "manifest"])
def test_damaged_entry_is_recomputed_with_identical_data(fault, tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store", cache_dir=tmp_path / "cache")
    spec = get_dataset("synth_events", **TINY)
    first = extract_split_report(
        FakeBackbone(), spec, "train", store, str(tmp_path), progress=False
    )
    want = np.asarray(store.load(first.key).tokens).copy()  # verified and stamped on this node
    entry = Path(store.entry(first.key))
    {"flip": lambda: flip_in_place(entry / "tokens.npy"),
     "truncate": lambda: truncate(entry / "tokens.npy"),
     "manifest": lambda: delete_manifest(entry)}[fault]()  # fmt: skip
    bb = FakeBackbone()
    again = extract_split_report(bb, spec, "train", store, str(tmp_path), progress=False)
    assert bb.calls > 0 and again.computed_shards == first.computed_shards  # recomputed, whole
    np.testing.assert_array_equal(np.asarray(store.load(again.key).tokens), want)
    if fault != "manifest":
        assert list(entry.glob("manifest.invalid-*.json"))  # the bad one was set aside


def test_flipped_bytes_are_caught_by_the_reader_too(tmp_path: Path) -> None:
    """A trial that reads an entry rotted since it was stamped gets a ChecksumError, never data."""
    store = EmbeddingStore(tmp_path / "store", cache_dir=tmp_path / "cache")
    spec = get_dataset("synth_events", **TINY)
    key = extract_split_report(
        FakeBackbone(), spec, "test", store, str(tmp_path), progress=False
    ).key
    store.load(key)
    flip_in_place(Path(store.entry(key)) / "tokens.npy")
    with pytest.raises(ChecksumError, match="tokens.npy"):
        store.load(key)
    assert not store.complete(key)  # invalidated: the next extraction recomputes it


def test_rotted_node_copy_of_a_remote_entry_is_copied_again(tmp_path: Path) -> None:
    """For a remote store the node-local copy is re-fetched and re-hashed, the entry kept."""
    import fsspec

    url = "memory://heal-test/store"
    fsspec.filesystem("memory").rm("/heal-test", recursive=True) if fsspec.filesystem(
        "memory"
    ).exists("/heal-test") else None
    store = EmbeddingStore(url, cache_dir=tmp_path / "cache")
    spec = get_dataset("synth_events", **TINY)
    key = extract_split_report(
        FakeBackbone(), spec, "test", store, str(tmp_path), progress=False
    ).key
    want = np.asarray(store.load(key).tokens).copy()
    local = tmp_path / "cache" / "entries" / key.relpath / "tokens.npy"
    flip_in_place(local)
    np.testing.assert_array_equal(np.asarray(store.load(key).tokens), want)
    assert store.complete(key)


def test_every_corrupt_shard_is_recomputed_in_one_attempt(tmp_path: Path) -> None:
    """Three shards rotted before finalize: one finalize finds all three, one pass redoes them."""
    from orchestrator.store.writer import ShardCorrupt
    from tests.orchestrator.test_store import KEY, _write

    store = EmbeddingStore(tmp_path / "store", cache_dir=tmp_path / "cache")
    _write(store, KEY, n_shards=5, finalize=False)
    parts = Path(store.entry(KEY)) / "parts"
    flip_in_place(parts / "shard-00001" / "tokens.npy", nbytes=4)
    flip_in_place(parts / "shard-00003" / "labels.npy", nbytes=2)
    (parts / "shard-00004" / "cls.npy").unlink()
    with pytest.raises(ShardCorrupt) as err:
        store.writer(KEY).finalize(5, {})
    assert err.value.shards == [1, 3, 4]
    assert sorted(store.writer(KEY).done_shards()) == [0, 2]
    assert not (Path(store.entry(KEY)) / "tokens.npy").exists()


def test_extraction_repairs_all_bad_shards_with_one_recompute(tmp_path: Path, monkeypatch) -> None:
    from orchestrator.store.writer import EntryWriter

    store = EmbeddingStore(tmp_path / "store", cache_dir=tmp_path / "cache")
    spec = get_dataset("synth_events", **TINY)
    real = EntryWriter.finalize
    calls = []

    def rot_then_finalize(self, n_shards, meta):  # bit rot between sealing and merging
        if not calls:
            for i in (0, 2):
                flip_in_place(Path(self._shard_dir(i)) / "tokens.npy", nbytes=4)
        calls.append(n_shards)
        return real(self, n_shards, meta)

    monkeypatch.setattr(EntryWriter, "finalize", rot_then_finalize)
    bb = FakeBackbone()
    report = extract_split_report(bb, spec, "train", store, str(tmp_path), progress=False,
                                  shard_size=2)  # fmt: skip
    assert len(calls) == 2  # one failed finalize (both shards found), one that succeeds
    monkeypatch.setattr(EntryWriter, "finalize", real)
    fresh = EmbeddingStore(tmp_path / "fresh", cache_dir=tmp_path / "cache2")
    clean = extract_split_report(FakeBackbone(), spec, "train", fresh, str(tmp_path),
                                 progress=False, shard_size=2)  # fmt: skip
    np.testing.assert_array_equal(
        np.asarray(store.load(report.key).tokens), np.asarray(fresh.load(clean.key).tokens)
    )


def test_interrupted_generation_leaves_no_temp_folder(tmp_path: Path) -> None:
    from orchestrator.datasets.synth import ensure_generated

    spec = get_dataset("synth_control", **TINY)
    stale = tmp_path / f".{spec.folder_name}.tmp-999999"  # what a SIGKILLed generator leaves
    (stale / "audio").mkdir(parents=True)
    ensure_generated(spec, tmp_path)
    assert not list(tmp_path.glob(".*.tmp-*"))
