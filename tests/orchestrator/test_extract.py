"""Extraction: shapes and labels, bad audio skipped and reported, resume after a real kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from orchestrator.datasets import get_dataset, open_split
from orchestrator.datasets.local import write_metadata
from orchestrator.extract import extract_split, extract_split_report
from orchestrator.store import EmbeddingStore
from tests.orchestrator.test_extract_fakes import D, F, FakeBackbone

TINY = {"train_clips": 6, "valid_clips": 2, "test_clips": 2, "clip_seconds": 1.0}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def store(tmp_path: Path) -> EmbeddingStore:
    return EmbeddingStore(tmp_path / "store", cache_dir=tmp_path / "cache")


def test_extract_synth_events_matches_split(tmp_path: Path, store: EmbeddingStore) -> None:
    spec = get_dataset("synth_events", **TINY)
    key = extract_split(
        FakeBackbone(),
        spec,
        "train",
        store,
        str(tmp_path / "data"),
        batch_size=4,
        progress=False,
        shard_size=4,
    )
    s = store.load(key)
    split = open_split(spec, "train", tmp_path / "data")
    assert s.tokens.shape == (6, 10 * F, D) and s.grid == (10, F) and s.cls.shape == (6, D)
    assert list(s.ids) == split.ids
    for i in range(6):
        assert set(np.flatnonzero(s.labels[i])) == set(split[i].labels)
    assert key.dataset_version == spec.version and key.weights_id == "random-fake-seed0"
    assert s.meta["n_shards"] == 2 and not s.padding_mask.any()


def test_multiclass_labels_are_indices_and_no_cls_is_none(
    tmp_path: Path, store: EmbeddingStore
) -> None:
    spec = get_dataset("synth_control", **TINY)
    key = extract_split(
        FakeBackbone(has_cls=False), spec, "test", store, str(tmp_path), progress=False
    )
    s = store.load(key)
    assert s.cls is None and s.labels.dtype == np.int64 and s.labels.shape == (2,)
    assert s.task == "multiclass"


def _bad_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    (root / "a").mkdir(parents=True)
    rows = []
    for i in range(5):
        sf.write(root / "a" / f"ok{i}.wav", rng.uniform(-0.1, 0.1, 16000 if i else 4000), 16000)
        rows.append({"id": f"ok{i}", "split": "train", "path": f"a/ok{i}.wav", "labels": ["Dog"]})
    (root / "a" / "empty.wav").write_bytes(b"")
    (root / "a" / "garbage.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    good = (root / "a" / "ok1.wav").read_bytes()
    (root / "a" / "truncated.wav").write_bytes(good[:40])
    for name in ("empty", "garbage", "truncated", "missing"):
        rows.append({"id": name, "split": "train", "path": f"a/{name}.wav", "labels": ["Cat"]})
    rows.append({"id": "t0", "split": "test", "path": "a/ok1.wav", "labels": ["Cat"]})
    rows.append({"id": "v0", "split": "valid", "path": "a/ok2.wav", "labels": ["Cat"]})
    write_metadata(str(root), rows, ())
    (root / "classes.txt").unlink()
    return root


@pytest.mark.parametrize("workers", [0, 3])
def test_bad_audio_is_skipped_listed_and_the_rest_kept(
    tmp_path: Path, store: EmbeddingStore, workers: int
) -> None:
    spec = get_dataset("desed", source=str(_bad_folder(tmp_path / "desed")))
    report = extract_split_report(
        FakeBackbone(),
        spec,
        "train",
        store,
        str(tmp_path),
        progress=False,
        shard_size=3,
        workers=workers,
    )
    s = store.load(report.key)
    assert list(s.ids) == [f"ok{i}" for i in range(5)]
    skipped = {x["id"]: x["error"] for x in s.skipped}
    assert set(skipped) == {"empty", "garbage", "truncated", "missing"}
    assert "empty" in skipped["empty"] and "unreadable" in skipped["garbage"]
    assert {x["id"] for x in report.skipped} == set(skipped)
    # ok0 is 0.25 s of 1 s (spec clip is 10 s, so everything is padded): padding mask agrees
    assert s.padding_mask.shape == (5, 100 * F)
    assert s.padding_mask[0].sum() == (100 - 3) * F and s.padding_mask[1].sum() == 90 * F


def test_checksum_failure_is_recomputed_not_used(tmp_path: Path, store: EmbeddingStore) -> None:
    spec = get_dataset("synth_events", **TINY)
    key = extract_split(FakeBackbone(), spec, "valid", store, str(tmp_path), progress=False)
    want = np.asarray(store.load(key).tokens).copy()
    path = Path(store.entry(key)) / "tokens.npy"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))
    bb = FakeBackbone()
    extract_split(bb, spec, "valid", store, str(tmp_path), progress=False)
    assert bb.calls > 0
    np.testing.assert_array_equal(np.asarray(store.load(key).tokens), want)


def test_complete_entry_is_reused_without_embedding(tmp_path: Path, store: EmbeddingStore) -> None:
    spec = get_dataset("synth_events", **TINY)
    extract_split(FakeBackbone(), spec, "test", store, str(tmp_path), progress=False)
    bb = FakeBackbone()
    report = extract_split_report(bb, spec, "test", store, str(tmp_path), progress=False)
    assert bb.calls == 0 and report.computed_shards == 0


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    from orchestrator.datasets import get_dataset
    from orchestrator.extract import extract_split
    from orchestrator.store import EmbeddingStore
    from tests.orchestrator.test_extract_fakes import FakeBackbone
    spec = get_dataset("synth_events", train_clips=6, valid_clips=2, test_clips=2,
                       clip_seconds=1.0)
    store = EmbeddingStore(sys.argv[1], cache_dir=sys.argv[2])
    extract_split(FakeBackbone(delay=float(sys.argv[4])), spec, "train", store, sys.argv[3],
                  batch_size=1, progress=False, shard_size=2)
    """
)


def test_resume_after_a_real_kill_computes_only_missing_shards(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store", cache_dir=tmp_path / "cache")
    data = tmp_path / "data"
    spec = get_dataset("synth_events", **TINY)
    open_split(spec, "train", data)  # generate before the clock starts
    args = [
        sys.executable,
        "-c",
        KILL_SCRIPT,
        str(tmp_path / "store"),
        str(tmp_path / "cache"),
        str(data),
        "0.4",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, start_new_session=True)
    parts = Path(store.entry(store_key_for(spec))) / "parts"
    deadline = time.monotonic() + 60
    while not list(parts.glob("shard-*/done.json")):
        assert proc.poll() is None, "extraction ended before it could be killed"
        assert time.monotonic() < deadline, "no shard sealed within 60 s"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    sealed = sorted(int(p.parent.name[-5:]) for p in parts.glob("shard-*/done.json"))
    assert 1 <= len(sealed) < 3 and not store.complete(store_key_for(spec))
    bb = FakeBackbone()
    report = extract_split_report(
        bb, spec, "train", store, str(data), batch_size=1, progress=False, shard_size=2
    )
    assert report.reused_shards == len(sealed) and report.computed_shards == 3 - len(sealed)
    assert bb.calls == 2 * (3 - len(sealed))  # batch_size=1, two clips per missing shard
    fresh = EmbeddingStore(tmp_path / "fresh", cache_dir=tmp_path / "cache2")
    key = extract_split(FakeBackbone(), spec, "train", fresh, str(data), progress=False)
    np.testing.assert_array_equal(
        np.asarray(store.load(report.key).tokens), np.asarray(fresh.load(key).tokens)
    )


def store_key_for(spec):
    from orchestrator.extract import store_key

    return store_key(FakeBackbone(), spec, "train")


def test_multiclass_clip_with_two_labels_is_skipped_not_fatal(
    tmp_path: Path, store: EmbeddingStore
) -> None:
    root = tmp_path / "esc"
    (root / "a").mkdir(parents=True)
    rows = []
    for i, labels in enumerate((["dog"], ["dog", "cat"], ["rain"])):
        sf.write(root / "a" / f"{i}.wav", np.zeros(8000), 16000)
        rows.append({"id": f"c{i}", "split": "train", "path": f"a/{i}.wav", "labels": labels})
    rows.append({"id": "v", "split": "valid", "path": "a/0.wav", "labels": ["dog"]})
    write_metadata(str(root), rows, ())
    (root / "classes.txt").unlink()
    key = extract_split(
        FakeBackbone(),
        get_dataset("esc50", source=str(root)),
        "train",
        store,
        str(tmp_path),
        progress=False,
    )
    s = store.load(key)
    assert list(s.ids) == ["c0", "c2"] and list(s.labels) == [0, 10]
    assert s.skipped == [{"id": "c1", "error": "multi-class clip with 2 labels"}]


def test_shards_cut_differently_by_an_earlier_run_are_not_reused(
    tmp_path: Path, store: EmbeddingStore
) -> None:
    spec = get_dataset("synth_events", **TINY)
    first = extract_split_report(
        FakeBackbone(), spec, "train", store, str(tmp_path), shard_size=4, progress=False
    )
    want = np.asarray(store.load(first.key).tokens).copy()
    store.delete(first.key)
    w = store.writer(first.key)  # a killed run with shard_size=4 sealed its shard 1 (clips 4-5)
    w.write_shard(
        1,
        {
            "tokens": want[4:6],
            "cls": None,
            "padding_mask": None,
            "labels": np.zeros((2, 10), np.uint8),
        },
        ["train-00004", "train-00005"],
        [],
        extra={"grid": [10, 2], "shard_size": 4, "n_total": 6, "first_id": "train-00004"},
    )
    report = extract_split_report(
        FakeBackbone(), spec, "train", store, str(tmp_path), shard_size=2, progress=False
    )
    assert report.reused_shards == 0 and report.computed_shards == 3
    np.testing.assert_array_equal(np.asarray(store.load(report.key).tokens), want)


def test_tokens_of_another_layer_are_another_entry(tmp_path):
    """Asking for layer 0 never returns the cached last-layer tokens."""
    from backbones import create_backbone

    from orchestrator.datasets import get_dataset
    from orchestrator.extract import extract_split
    from orchestrator.store import EmbeddingStore

    spec = get_dataset("synth_events", train_clips=2, valid_clips=1, test_clips=1, clip_seconds=1.0)
    backbone = create_backbone("eat", checkpoint="random", size="tiny")
    store = EmbeddingStore(str(tmp_path / "store"))
    last = extract_split(backbone, spec, "test", store, str(tmp_path / "data"), progress=False)
    first = extract_split(
        backbone, spec, "test", store, str(tmp_path / "data"), progress=False, layer=0
    )
    assert last != first and (last.layer, first.layer) == (-1, 0)
    a = np.asarray(store.load(last).tokens, dtype=np.float32)
    b = np.asarray(store.load(first).tokens, dtype=np.float32)
    assert not np.allclose(a, b)
