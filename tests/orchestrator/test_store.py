"""The embedding store on a local folder: keys, atomic completion, mmap reads, checksums."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from orchestrator.store import EmbeddingStore, StoreKey
from orchestrator.store.io import ChecksumError

KEY = StoreKey("eat", "random-tiny-seed0", "fbank128-abc", "synth_events", "synth-1", "train")


def _write(
    store: EmbeddingStore, key: StoreKey, n_shards: int = 3, per: int = 2, finalize: bool = True
) -> np.ndarray:
    rng = np.random.default_rng(0)
    w = store.writer(key)
    all_tokens = []
    for i in range(n_shards):
        tokens = rng.standard_normal((per, 6, 4)).astype(np.float16)
        all_tokens.append(tokens)
        w.write_shard(
            i,
            {
                "tokens": tokens,
                "cls": tokens.mean(1),
                "padding_mask": np.zeros((per, 6), bool),
                "labels": np.eye(3, dtype=np.uint8)[[i % 3] * per],
            },
            [f"s{i}-{j}" for j in range(per)],
            [{"id": f"bad{i}", "error": "unreadable"}] if i == 1 else [],
            extra={"grid": [3, 2]},
        )
    if finalize:
        w.finalize(n_shards, {"task": "multilabel"})
    return np.concatenate(all_tokens)


def test_key_digest_changes_with_every_field() -> None:
    digests = {KEY.digest}
    for field in ("encoder", "weights_id", "frontend_id", "dataset", "dataset_version", "split"):
        digests.add(replace(KEY, **{field: "other"}).digest)
    assert len(digests) == 7


def test_roundtrip_is_fp16_memmap_with_ids_grid_and_skipped(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store", cache_dir=tmp_path / "cache")
    tokens = _write(store, KEY)
    assert store.complete(KEY)
    s = store.load(KEY)
    assert isinstance(s.tokens, np.memmap) and s.tokens.dtype == np.float16
    np.testing.assert_array_equal(np.asarray(s.tokens), tokens)
    assert s.cls.shape == (6, 4) and s.padding_mask.dtype == bool and s.grid == (3, 2)
    assert list(s.ids) == [f"s{i}-{j}" for i in range(3) for j in range(2)]
    assert s.labels.shape == (6, 3) and s.task == "multilabel"
    assert s.skipped == [{"id": "bad1", "error": "unreadable"}]
    assert not s.tokens.flags.writeable
    assert not (Path(store.entry(KEY)) / "parts").exists()
    assert store.keys() == [asdict(KEY)]


def test_entry_without_manifest_is_never_complete(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store", cache_dir=tmp_path / "cache")
    _write(store, KEY, finalize=False)
    assert not store.complete(KEY)
    with pytest.raises(FileNotFoundError, match="not complete"):
        store.load(KEY)
    assert sorted(store.writer(KEY).done_shards()) == [0, 1, 2]


def test_manifest_of_another_key_is_not_complete(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store", cache_dir=tmp_path / "cache")
    _write(store, KEY)
    other = replace(KEY, weights_id="sha256:feed")
    assert not store.complete(other)


def test_corrupt_file_is_detected_invalidated_and_never_used(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store", cache_dir=tmp_path / "cache")
    _write(store, KEY)
    store.load(KEY)  # verified once
    path = Path(store.entry(KEY)) / "tokens.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match="tokens.npy"):
        store.load(KEY)
    assert not store.complete(KEY)


def test_corrupt_shard_is_dropped_at_finalize(tmp_path: Path) -> None:
    from orchestrator.store.writer import ShardCorrupt

    store = EmbeddingStore(tmp_path / "store", cache_dir=tmp_path / "cache")
    _write(store, KEY, finalize=False)
    part = Path(store.entry(KEY)) / "parts" / "shard-00001" / "tokens.npy"
    data = bytearray(part.read_bytes())
    data[-2] ^= 0x01
    part.write_bytes(bytes(data))
    with pytest.raises(ShardCorrupt) as err:
        store.writer(KEY).finalize(3, {})
    assert err.value.shard == 1 and sorted(store.writer(KEY).done_shards()) == [0, 2]
    assert not store.complete(KEY)


def test_to_probe_data_passes_arrays_through(tmp_path: Path, monkeypatch) -> None:
    import probes

    if not hasattr(probes, "ProbeData"):  # until the probes branch lands: the contract's fields
        from dataclasses import dataclass

        @dataclass(frozen=True)
        class ProbeData:
            tokens: object
            labels: object
            task: str
            cls: object = None
            padding_mask: object = None
            grid: tuple[int, int] | None = None

        monkeypatch.setattr(probes, "ProbeData", ProbeData, raising=False)
    store = EmbeddingStore(tmp_path / "store", cache_dir=tmp_path / "cache")
    _write(store, KEY)
    pd = store.load(KEY).to_probe_data()
    assert pd.task == "multilabel" and pd.grid == (3, 2) and pd.tokens.shape == (6, 6, 4)
    assert isinstance(pd.tokens, np.memmap) and pd.padding_mask.shape == (6, 6)
