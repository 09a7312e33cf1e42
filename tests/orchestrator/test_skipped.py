"""Skipped clips reach skipped.json, report.md and the MLflow metrics, per dataset and split."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator import skipped
from orchestrator.store import EmbeddingStore
from tests.orchestrator.test_store import KEY, _write


@dataclass
class Got:
    keys: dict


def test_skipped_clips_are_collected_written_and_reported(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path / "store", cache_dir=tmp_path / "cache")
    _write(store, KEY)  # shard 1 lists {"id": "bad1", "error": "unreadable"}
    clean = replace(KEY, split="test")
    _write(store, clean, n_shards=1)
    extracted = {
        ("eat@random-tiny", "synth_events"): Got({"train": KEY, "test": clean}),
        ("beats@random-tiny", "synth_events"): "extraction failed: boom",
    }
    rows = skipped.collect_skipped(str(tmp_path / "store"), extracted)
    assert rows == [
        {"encoder": "eat@random-tiny", "dataset": "synth_events", "split": "train",
         "id": "bad1", "error": "unreadable"}
    ]  # fmt: skip
    skipped.write_skipped(tmp_path, rows)
    assert skipped.read_skipped(tmp_path) == rows
    report = tmp_path / "report.md"
    report.write_text("# Report\n\nbody\n")
    skipped.append_to_report(report, rows)
    skipped.append_to_report(report, rows)  # a resumed sweep does not add it twice
    text = report.read_text()
    assert text.count("## Skipped clips") == 1
    assert "| synth_events | train | 1 | `bad1`: unreadable |" in text
    assert skipped.metrics(rows) == {"skipped_clips": 1.0, "skipped.synth_events.train": 1.0}


def test_nothing_skipped_is_said_explicitly() -> None:
    assert "No clip was skipped" in skipped.markdown([])
    assert skipped.metrics([]) == {"skipped_clips": 0.0}
