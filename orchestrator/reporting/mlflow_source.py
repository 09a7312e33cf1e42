"""Results from an MLflow experiment, in the same long format as the results file.

The sweep (``orchestrator.tracking.SweepTracker``) logs a run per sweep (tag ``kind=sweep``),
per study (``kind=study``) and per trial; every run carries ``sweep_id``. A result is a final
trial run (``stage=final``) tagged ``selected=true`` whose study run is FINISHED: a study still
running, killed or failed has not chosen its configuration yet, so its cells show as missing.
Keys (backbone, dataset, probe, seed) are read from tags, falling back to params; the score is
the metric ``test_score``. Runs of different sweeps (another config, another output folder)
are never merged: with more than one sweep id in the experiment, ``sweep_id`` must name one.
mlflow is imported only when this source is used.
"""

from __future__ import annotations

import difflib
import json
import logging
from datetime import UTC, datetime
from typing import Any

import polars as pl

from orchestrator.reporting.sources import KEY_COLUMNS, ReportError

log = logging.getLogger(__name__)

METRIC = "test_score"
OPTIONAL = ("dataset_version", "weights_id", "metric")
CELL = ("backbone", "dataset", "probe")
_PAGE = 1000


def _field(run: Any, name: str) -> str | None:
    return run.data.tags.get(name, run.data.params.get(name))


def _search(client: Any, experiment_id: str, query: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=query, max_results=_PAGE, page_token=token
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _when(run: Any) -> str:
    stamp = (run.info.start_time or 0) / 1000
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _sweeps_text(sweeps: dict[str, Any], counts: dict[str | None, int]) -> str:
    lines = []
    for sweep_id in sorted(counts, key=lambda s: (s is None, s or "")):
        run = sweeps.get(sweep_id) if sweep_id else None
        what = (
            f"{run.data.tags.get('sweep_name', '?')}, started {_when(run)}, "
            f"out {run.data.tags.get('out_dir', '?')}"
            if run
            else "no sweep run"
        )
        lines.append(f"  {sweep_id or '(no sweep_id tag)'}: {what}; {counts[sweep_id]} results")
    return "\n".join(lines)


def _protocol(sweep_run: Any) -> dict[str, Any]:
    """The protocol columns a sweep stamps on its result rows (``merge.with_protocol``), read
    back from its sweep run's ``config.*`` params, so a merge compares MLflow inputs too."""
    params = sweep_run.data.params
    out: dict[str, Any] = {}
    for column, param in (
        ("epochs", "config.train.epochs"),
        ("search_trials", "config.search.trials"),
    ):
        if param in params:
            out[column] = int(float(params[param]))
    if "config.seeds" in params:
        seeds = json.loads(params["config.seeds"])
        out["seeds"] = ",".join(str(s) for s in seeds)
    return out


def load_mlflow(
    experiment: str, tracking_uri: str | None = None, sweep_id: str | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Selected final runs of finished studies of one sweep as a long table.

    Also returns the (backbone, dataset, probe) cells of studies that did not finish (or
    whose selected runs have no score), so the report can show them as missing. Raises
    :class:`ReportError` when the experiment holds several sweeps and ``sweep_id`` is None.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        close = difflib.get_close_matches(experiment, names, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ReportError(
            f"MLflow experiment {experiment!r} not found at {client.tracking_uri!r}.{hint} "
            f"Experiments there: {', '.join(names) or '(none)'}. Pass --tracking-uri for another "
            "store (e.g. sqlite:///outputs/<sweep>/mlflow.db)."
        )
    eid = exp.experiment_id
    sweeps = {
        r.data.tags["sweep_id"]: r
        for r in _search(client, eid, "tags.kind = 'sweep'")
        if "sweep_id" in r.data.tags
    }
    scope = ""
    if sweep_id is not None:
        if sweep_id not in sweeps:
            listing = "\n".join(
                f"  {s}: {r.data.tags.get('sweep_name', '?')}, started {_when(r)}"
                for s, r in sorted(sweeps.items())
            )
            raise ReportError(
                f"sweep id {sweep_id!r} not found in MLflow experiment {experiment!r}. Sweeps "
                f"there:\n{listing or '  (none)'}"
            )
        scope = f" and tags.sweep_id = '{sweep_id}'"
    finals = _search(client, eid, f"tags.stage = 'final' and tags.selected = 'true'{scope}")
    counts: dict[str | None, int] = {}
    for run in finals:
        key = run.data.tags.get("sweep_id")
        counts[key] = counts.get(key, 0) + 1
    if len(counts) > 1:
        raise ReportError(
            f"MLflow experiment {experiment!r} holds the results of {len(counts)} sweeps; "
            f"refusing to merge them. Pick one with --sweep-id:\n{_sweeps_text(sweeps, counts)}"
        )
    studies = _search(client, eid, f"tags.kind = 'study'{scope}")
    finished = {
        r.data.tags.get("study_id")
        for r in studies
        if r.info.status == "FINISHED" and (not counts or r.data.tags.get("sweep_id") in counts)
    }
    unscored = [
        {c: _field(r, c) for c in CELL}
        for r in studies
        if r.info.status != "FINISHED" and (not counts or r.data.tags.get("sweep_id") in counts)
    ]
    protocols = {sid: _protocol(run) for sid, run in sweeps.items()}
    rows, incomplete, unfinished = [], [], 0
    for run in finals:
        if run.data.tags.get("study_id") not in finished:
            unfinished += 1
            continue
        if run.info.status != "FINISHED" or METRIC not in run.data.metrics:
            unscored.append({c: _field(run, c) for c in CELL})
            continue
        row: dict[str, Any] = {c: _field(run, c) for c in KEY_COLUMNS}
        if any(v is None for v in row.values()):
            incomplete.append(run.info.run_id)
            continue
        row["score"] = float(run.data.metrics[METRIC])
        row.update({c: _field(run, c) for c in OPTIONAL})
        row.update(protocols.get(run.data.tags.get("sweep_id"), {}))
        row["run_id"] = run.info.run_id
        row["start_time"] = run.info.start_time or 0
        rows.append(row)
    if incomplete:
        raise ReportError(
            f"{len(incomplete)} final run(s) in {experiment!r} lack a tag/param among "
            f"{', '.join(KEY_COLUMNS)} (run ids: {', '.join(incomplete[:5])}); tag them or "
            "delete them."
        )
    if unfinished:
        log.warning(
            "%d selected final run(s) belong to studies that are not FINISHED: left out",
            unfinished,
        )
    unscored_frame = pl.DataFrame(unscored, schema=dict.fromkeys(CELL, pl.Utf8)).drop_nulls()
    if unscored:
        log.warning(
            "%d unfinished studies or selected runs without %s: left out (missing cells)",
            len(unscored),
            METRIC,
        )
    if not rows:
        raise ReportError(
            f"MLflow experiment {experiment!r} has no FINISHED final runs tagged selected=true "
            f"(metric {METRIC!r}) in a FINISHED study; run the sweep to the end first."
        )
    frame = pl.DataFrame(rows, schema_overrides={c: pl.Utf8 for c in OPTIONAL})
    frame = frame.drop([c for c in OPTIONAL if frame.get_column(c).is_null().all()])
    deduped = frame.sort("start_time").unique(
        subset=list(KEY_COLUMNS), keep="last", maintain_order=True
    )
    if deduped.height < frame.height:
        log.warning(
            "%d duplicate final run(s) in %r: kept the latest per seed",
            frame.height - deduped.height,
            experiment,
        )
    return deduped.drop("start_time"), unscored_frame
