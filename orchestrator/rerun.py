"""A rerun of a finished sweep only verifies: no Ray, no MLflow, a few seconds.

When a sweep finishes with every study scored, ``sweep.json`` records a ``finished`` stamp: the
fingerprint of the whole validated config and the SHA-256 of ``results.csv``. The same command
run again finds the stamp, checks that the config is unchanged and that the results file and the
report are still there and unchanged, prints that, and exits 0. Any difference (another
override, an edited results file, a missing report, a sweep with failed studies) runs the sweep
as before, which skips what is finished and recomputes the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MARKER = "sweep.json"
REPORT = Path("report") / "report.md"


def fingerprint(cfg: Any) -> str:
    """SHA-256 of the validated config (every setting the results depend on)."""
    config = dataclasses.asdict(cfg)
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stamp_finished(cfg: Any, rows: int) -> None:
    """Record in ``sweep.json`` that this config finished with ``rows`` result rows."""
    marker = cfg.out_dir / MARKER
    state = json.loads(marker.read_text()) if marker.exists() else {}
    state["finished"] = {
        "config": fingerprint(cfg),
        "results_sha256": _sha(cfg.out_dir / "results.csv"),
        "rows": rows,
    }
    marker.write_text(json.dumps(state, indent=2) + "\n")


def clear_finished(out_dir: Path) -> None:
    """Forget the stamp (a run starts: until it finishes, the folder is not finished)."""
    marker = out_dir / MARKER
    if not marker.exists():
        return
    state = json.loads(marker.read_text())
    if state.pop("finished", None) is not None:
        marker.write_text(json.dumps(state, indent=2) + "\n")


def verified(cfg: Any) -> str | None:
    """A one-line summary if the folder holds this exact config's finished, intact results."""
    marker = cfg.out_dir / MARKER
    try:
        stamp = json.loads(marker.read_text()).get("finished")
    except (OSError, ValueError):
        return None
    if not stamp or stamp.get("config") != fingerprint(cfg):
        return None
    results, report = cfg.out_dir / "results.csv", cfg.out_dir / REPORT
    if not results.is_file() or not report.is_file():
        log.info("finished sweep's results or report are missing: running it again")
        return None
    if _sha(results) != stamp.get("results_sha256"):
        log.info("results.csv changed since the sweep finished: running it again")
        return None
    return (
        f"sweep {cfg.name} already finished; skipping: {stamp.get('rows')} result rows verified "
        "with this exact config (results.csv unchanged), nothing to run"
    )
