"""Skipped (unreadable) clips per dataset and split: ``skipped.json``, a report section, metrics.

Extraction skips a clip it cannot decode and lists it in the store entry's manifest. A log line
is easy to miss, so the driver collects them after extraction into ``<out>/skipped.json``
(one row per encoder, dataset, split and clip), appends a "Skipped clips" section to
``report.md``, and the sweep's MLflow run gets the counts as metrics and the file as an artifact.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE = "skipped.json"
EXAMPLES = 5


def collect_skipped(store_url: str, extracted: Mapping[tuple[str, str], Any]) -> list[dict]:
    """Rows ``{encoder, dataset, split, id, error}`` read from the manifests of the entries used.

    ``extracted`` maps (encoder label, dataset) to the extraction result (with ``keys``: split
    -> store key) or to an error string (a failed pair, skipped here).
    """
    from orchestrator.store import EmbeddingStore

    store = EmbeddingStore(store_url)
    rows = []
    for (encoder, dataset), got in sorted(extracted.items()):
        keys = getattr(got, "keys", None)
        if not isinstance(keys, Mapping):
            continue
        for split, key in keys.items():
            manifest = store.manifest(key) or {}
            for clip in manifest.get("skipped", []):
                rows.append(
                    {
                        "encoder": encoder,
                        "dataset": dataset,
                        "split": split,
                        "id": str(clip.get("id")),
                        "error": str(clip.get("error")),
                    }
                )
    return rows


def write_skipped(out_dir: Path, rows: list[dict]) -> Path:
    path = Path(out_dir) / FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n")
    tmp.replace(path)
    return path


def read_skipped(out_dir: Path) -> list[dict]:
    try:
        return json.loads((Path(out_dir) / FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return []


def summary(rows: list[dict]) -> list[dict]:
    """One row per (dataset, split): distinct clips skipped and a few ids with their error."""
    by: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for r in rows:
        by[(r["dataset"], r["split"])].setdefault(r["id"], r["error"])
    return [
        {
            "dataset": d,
            "split": s,
            "skipped": len(clips),
            "examples": list(clips.items())[:EXAMPLES],
        }
        for (d, s), clips in sorted(by.items())
    ]


def markdown(rows: list[dict]) -> str:
    """The report section (says so explicitly when nothing was skipped)."""
    lines = ["## Skipped clips", ""]
    table = summary(rows)
    if not table:
        lines.append("No clip was skipped: every clip of every split was decoded.")
        return "\n".join(lines) + "\n"
    lines += [
        (
            "Clips that could not be decoded were left out of the token maps (and so of "
            f"training and scoring); the full list is in `{FILE}`."
        ),
        "",
        "| dataset | split | skipped | examples |",
        "|---|---|---:|---|",
    ]
    for t in table:
        ex = "; ".join(f"`{i}`: {e[:80]}" for i, e in t["examples"])
        lines.append(f"| {t['dataset']} | {t['split']} | {t['skipped']} | {ex} |")
    return "\n".join(lines) + "\n"


def append_to_report(report_md: Path | None, rows: list[dict]) -> None:
    if report_md is None or not Path(report_md).exists():
        return
    path = Path(report_md)
    text = path.read_text(encoding="utf-8")
    if "## Skipped clips" in text:
        text = text[: text.index("## Skipped clips")].rstrip() + "\n"
    path.write_text(text.rstrip() + "\n\n" + markdown(rows), encoding="utf-8")


def metrics(rows: list[dict]) -> dict[str, float]:
    """MLflow metrics: ``skipped_clips`` and ``skipped.<dataset>.<split>``."""
    out: dict[str, float] = {"skipped_clips": float(sum(t["skipped"] for t in summary(rows)))}
    for t in summary(rows):
        out[f"skipped.{t['dataset']}.{t['split']}"] = float(t["skipped"])
    return out
