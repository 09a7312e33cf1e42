"""The last rough edges of bad input: each ends in one line naming the input and exit 2 (the
healed store: a WARNING naming the entry and where its manifest went)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest
import ray
import torch

from orchestrator.sweep import main


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("ray.init called before the input was refused")

    monkeypatch.setattr(ray, "init", refuse)


def _last_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "nothing on stderr"
    assert not any(line.startswith("Traceback") for line in err), "\n".join(err)
    return err[-1]


def test_override_without_a_key(tmp_path, capsys):
    assert main(["quickstart", "=4", "--out", str(tmp_path / "out")]) == 2
    line = _last_line(capsys)
    assert line.startswith("error: override '=4' has no key") and "KEY=VALUE" in line


def _sweep(tmp_path, checkpoint: Path, *extra: str) -> int:
    return main(
        ["quickstart", "encoder=[eat]", f"encoder.eat.checkpoint={checkpoint}", *extra,
         "--out", str(tmp_path / "out")]
    )  # fmt: skip


def test_random_bytes_checkpoint_with_trust_pickle(tmp_path, capsys):
    bad = tmp_path / "random.pt"
    bad.write_bytes(os.urandom(4096))
    assert _sweep(tmp_path, bad, "+encoder.eat.overrides.trust_pickle=true") == 2
    line = _last_line(capsys)
    assert line.startswith("error: encoder 'eat':") and str(bad) in line
    assert "not a readable torch checkpoint" in line


def test_checkpoint_whose_keys_do_not_fit_the_encoder(tmp_path, capsys):
    bad = tmp_path / "other.pt"
    torch.save({"foo": torch.zeros(3)}, bad)
    assert _sweep(tmp_path, bad) == 2
    line = _last_line(capsys)
    assert line.startswith("error: encoder 'eat':") and str(bad) in line
    assert "does not match the encoder" in line and "unexpected keys: foo" in line


def test_healed_store_names_the_entry_set_aside_and_where(tmp_path, caplog):
    from orchestrator.datasets import get_dataset
    from orchestrator.extract import extract_split_report
    from orchestrator.store import EmbeddingStore
    from tests.orchestrator.test_extract_fakes import FakeBackbone
    from tests.orchestrator.test_store_heal import TINY, flip_in_place

    store = EmbeddingStore(tmp_path / "store", cache_dir=tmp_path / "cache")
    spec = get_dataset("synth_events", **TINY)
    first = extract_split_report(
        FakeBackbone(), spec, "train", store, str(tmp_path), progress=False
    )
    store.load(first.key)
    entry = Path(store.entry(first.key))
    flip_in_place(entry / "tokens.npy")
    with caplog.at_level(logging.WARNING, logger="orchestrator.store"):
        extract_split_report(FakeBackbone(), spec, "train", store, str(tmp_path), progress=False)
    (moved,) = entry.glob("manifest.invalid-*.json")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    named = [m for m in lines if str(entry) in m and str(moved) in m]
    assert named, lines
    assert "set aside" in named[0] and "recomputed" in named[0]
