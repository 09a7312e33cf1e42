"""The store and the readers on S3, against a real local S3 endpoint (moto server)."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from orchestrator.store import EmbeddingStore, StoreKey
from orchestrator.store.io import ChecksumError

pytestmark = pytest.mark.integration
KEY = StoreKey("eat", "random-tiny-seed0", "fbank128-abc", "synth_events", "synth-1", "test")
ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    moto_server = pytest.importorskip("moto.server")
    import s3fs

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    s3fs.S3FileSystem.clear_instance_cache()
    s3fs.S3FileSystem().mkdir("bench")
    try:
        yield "s3://bench"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        s3fs.S3FileSystem.clear_instance_cache()
        server.stop()


def _write(store: EmbeddingStore, key: StoreKey) -> np.ndarray:
    rng = np.random.default_rng(1)
    w = store.writer(key)
    tokens = rng.standard_normal((5, 12, 4)).astype(np.float16)
    for i, (lo, hi) in enumerate(((0, 2), (2, 4), (4, 5))):
        t = tokens[lo:hi]
        w.write_shard(
            i,
            {
                "tokens": t,
                "cls": None,
                "padding_mask": np.zeros((hi - lo, 12), bool),
                "labels": np.ones((hi - lo, 3), np.uint8),
            },
            [f"c{j}" for j in range(lo, hi)],
            [],
            extra={"grid": [6, 2]},
        )
    w.finalize(3, {"task": "multilabel"})
    return tokens


def test_s3_entry_is_copied_once_to_the_node_and_memory_mapped(s3: str, tmp_path: Path) -> None:
    store = EmbeddingStore(f"{s3}/store1", cache_dir=tmp_path / "node")
    tokens = _write(store, KEY)
    assert store.complete(KEY) and not store.is_local
    s = store.load(KEY)
    assert isinstance(s.tokens, np.memmap) and Path(s.tokens.filename).is_relative_to(tmp_path)
    np.testing.assert_array_equal(np.asarray(s.tokens), tokens)
    assert s.cls is None and list(s.ids) == [f"c{j}" for j in range(5)]
    inode = os.stat(s.tokens.filename).st_ino
    assert os.stat(store.load(KEY).tokens.filename).st_ino == inode  # reused, not re-copied


def _load_inode(args: tuple[str, str]) -> tuple[int, float]:
    url, cache = args
    s = EmbeddingStore(url, cache_dir=cache).load(KEY)
    return os.stat(s.tokens.filename).st_ino, float(np.asarray(s.tokens, np.float32).sum())


def test_concurrent_trials_share_one_node_copy(s3: str, tmp_path: Path) -> None:
    store = EmbeddingStore(f"{s3}/store2", cache_dir=tmp_path / "node")
    _write(store, KEY)
    with mp.get_context("spawn").Pool(3) as pool:
        got = pool.map(_load_inode, [(f"{s3}/store2", str(tmp_path / "node"))] * 3)
    assert len({inode for inode, _ in got}) == 1 and len({s for _, s in got}) == 1
    entries = list((tmp_path / "node" / "entries").rglob("tokens.npy"))
    assert len(entries) == 1 and not list((tmp_path / "node" / "entries").rglob(".*.tmp-*"))
    assert not os.access(entries[0], os.W_OK) or os.geteuid() == 0
    assert entries[0].stat().st_mode & 0o222 == 0  # read-only for every trial


def test_corrupt_s3_object_is_never_used(s3: str, tmp_path: Path) -> None:
    import fsspec

    store = EmbeddingStore(f"{s3}/store3", cache_dir=tmp_path / "node")
    _write(store, KEY)
    fs = fsspec.filesystem("s3")
    path = f"{store.entry(KEY)}/tokens.npy"
    data = bytearray(fs.cat_file(path))
    data[-1] ^= 0x7F
    fs.pipe_file(path, bytes(data))
    with pytest.raises(ChecksumError, match="tokens.npy"):
        store.load(KEY)
    assert not store.complete(KEY)
    assert not (tmp_path / "node" / "entries" / KEY.relpath).exists()


def test_extraction_to_s3_resumes_from_sealed_shards(s3: str, tmp_path: Path) -> None:
    from orchestrator.datasets import get_dataset
    from orchestrator.extract import extract_split_report, store_key
    from tests.orchestrator.test_extract_fakes import FakeBackbone

    spec = get_dataset("synth_events", train_clips=2, valid_clips=1, test_clips=5, clip_seconds=1.0)
    store = EmbeddingStore(f"{s3}/store4", cache_dir=tmp_path / "node")
    key = store_key(FakeBackbone(), spec, "test")
    # a previous run sealed shard 1 (of 3) and died
    first = extract_split_report(
        FakeBackbone(),
        spec,
        "test",
        EmbeddingStore(tmp_path / "local", cache_dir=tmp_path / "n2"),
        str(tmp_path / "data"),
        shard_size=2,
        progress=False,
    )
    local = EmbeddingStore(tmp_path / "local", cache_dir=tmp_path / "n2").load(first.key)
    store.writer(key).write_shard(
        1,
        {
            "tokens": np.asarray(local.tokens[2:4]),
            "cls": np.asarray(local.cls[2:4]),
            "padding_mask": np.asarray(local.padding_mask[2:4]),
            "labels": np.asarray(local.labels[2:4]),
        },
        list(local.ids[2:4]),
        [],
        extra={
            "grid": list(local.grid),
            "shard_size": 2,
            "n_total": 5,
            "first_id": str(local.ids[2]),
        },
    )
    bb = FakeBackbone()
    report = extract_split_report(
        bb, spec, "test", store, str(tmp_path / "data"), batch_size=1, shard_size=2, progress=False
    )
    assert (report.reused_shards, report.computed_shards, bb.calls) == (1, 2, 3)
    np.testing.assert_array_equal(np.asarray(store.load(key).tokens), np.asarray(local.tokens))


def test_dataset_read_from_an_s3_prefix(s3: str, tmp_path: Path) -> None:
    import fsspec

    from orchestrator.datasets import get_dataset, open_split
    from tests.orchestrator.test_datasets import _user_folder
    from tests.orchestrator.test_datasets_readers import esc50_archive

    fs = fsspec.filesystem("s3")
    fs.put(str(_user_folder(tmp_path / "desed")), "bench/datasets/desed", recursive=True)
    spec = get_dataset("desed", source=f"{s3}/datasets/desed")
    test = open_split(spec, "test", tmp_path)
    assert len(test) == 2 and test[1].waveform.shape == (4000,)
    fs.put(str(esc50_archive(tmp_path / "esc")), "bench/datasets/esc50", recursive=True)
    esc = open_split(get_dataset("esc50", source=f"{s3}/datasets/esc50"), "valid", tmp_path)
    assert len(esc) == 1 and esc[0].sample_rate == 44100  # carved from folds 1-4
