"""Several store entries read as one split (BirdSet train + mixup variants) without copies."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from orchestrator.store import EmbeddingStore, StoreKey
from orchestrator.store.concat import ConcatRows

KEY = StoreKey("eat", "random-tiny-seed0", "fe", "hsn", "birdset-hf-main", "train")


def test_concat_rows_indexes_like_the_concatenated_array() -> None:
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((n, 3, 2)).astype(np.float16) for n in (4, 1, 5)]
    whole = np.concatenate(parts)
    rows = ConcatRows(tuple(parts))
    assert rows.shape == whole.shape and rows.dtype == np.float16 and len(rows) == 10
    for index in (
        slice(2, 7),
        slice(None),
        np.array([0, 4, 5, 9]),
        np.array([9, 0, 4, 3]),
        np.array([-1, 2]),
    ):
        np.testing.assert_array_equal(rows[index], whole[index])
    np.testing.assert_array_equal(rows[7], whole[7])
    np.testing.assert_array_equal(np.asarray(rows), whole)
    with pytest.raises(ValueError, match="cannot stack"):
        ConcatRows((parts[0], np.zeros((2, 4, 2), np.float16)))


def _entry(store: EmbeddingStore, key: StoreKey, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tokens = rng.standard_normal((n, 6, 4)).astype(np.float16)
    w = store.writer(key)
    w.write_shard(
        0,
        {
            "tokens": tokens,
            "cls": None,
            "padding_mask": np.zeros((n, 6), bool),
            "labels": rng.integers(0, 2, (n, 3)).astype(np.uint8),
        },
        [f"{key.split}-{i}" for i in range(n)],
        [],
        extra={"grid": [3, 2]},
    )
    w.finalize(1, {"task": "multilabel"})
    return tokens


def test_load_many_combines_train_and_mixup_variants(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "s", cache_dir=tmp_path / "c")
    keys = [KEY] + [replace(KEY, split=f"train_mix{k}") for k in range(2)]
    want = np.concatenate(
        [_entry(store, k, n, i) for i, (k, n) in enumerate(zip(keys, (3, 2, 4), strict=True))]
    )
    both = store.load_many(keys)
    assert len(both) == 9 and both.tokens.shape == (9, 6, 4) and both.cls is None
    np.testing.assert_array_equal(both.tokens[np.array([0, 3, 8])], want[[0, 3, 8]])
    assert list(both.ids[:4]) == ["train-0", "train-1", "train-2", "train_mix0-0"]
    probes = pytest.importorskip("probes")
    if hasattr(probes, "ProbeData"):  # the real batch reader accepts the combined rows
        from probes.data import iter_batches

        pd = both.to_probe_data()
        import torch

        batches = list(iter_batches(pd, 4, torch.device("cpu"), torch.Generator().manual_seed(0)))
        assert sum(b.tokens.shape[0] for b in batches) == 9
