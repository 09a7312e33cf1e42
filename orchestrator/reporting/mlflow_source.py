"""Results from an MLflow experiment, in the same long format as the results file.

The sweep logs every final seed run as an MLflow run with tags ``stage="final"``, ``backbone``,
``dataset``, ``probe``, ``seed``, ``dataset_version`` and the metric ``test_score``. Each key is
read from the run's tags, falling back to its params. Runs without ``test_score`` or with status
FAILED/KILLED are left out and counted in a warning (their cells then show as missing). If one
(backbone, dataset, probe, seed) was logged more than once (a resumed sweep), the most recently
started run is kept, with a warning. mlflow is imported only when this source is used.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

import polars as pl

from orchestrator.reporting.sources import KEY_COLUMNS, ReportError

log = logging.getLogger(__name__)

METRIC = "test_score"
OPTIONAL = ("dataset_version", "weights_id", "metric")
BAD_STATUS = ("FAILED", "KILLED")
_PAGE = 1000


def _field(run: Any, name: str) -> str | None:
    return run.data.tags.get(name, run.data.params.get(name))


def load_mlflow(
    experiment: str, tracking_uri: str | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Final runs of ``experiment`` as a long table (backbone, dataset, probe, seed, score, ...).

    Also returns the (backbone, dataset, probe) keys of final runs that have no score (failed or
    unfinished), so the report can show those cells as missing.
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
    runs, token = [], None
    while True:
        page = client.search_runs(
            [exp.experiment_id],
            filter_string="tags.stage = 'final'",
            max_results=_PAGE,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    rows, unscored, incomplete = [], [], []
    for run in runs:
        if run.data.tags.get("selected") == "false":
            continue  # a top-k configuration the sweep did not select (its seeds ran too)
        if run.info.status in BAD_STATUS or METRIC not in run.data.metrics:
            unscored.append({c: _field(run, c) for c in ("backbone", "dataset", "probe")})
            continue
        row: dict[str, Any] = {c: _field(run, c) for c in KEY_COLUMNS}
        if any(v is None for v in row.values()):
            incomplete.append(run.info.run_id)
            continue
        row["score"] = float(run.data.metrics[METRIC])
        row.update({c: _field(run, c) for c in OPTIONAL})
        row["run_id"] = run.info.run_id
        row["start_time"] = run.info.start_time or 0
        rows.append(row)
    if incomplete:
        raise ReportError(
            f"{len(incomplete)} final run(s) in {experiment!r} lack a tag/param among "
            f"{', '.join(KEY_COLUMNS)} (run ids: {', '.join(incomplete[:5])}); tag them or "
            "delete them."
        )
    unscored_frame = pl.DataFrame(
        unscored, schema=dict.fromkeys(("backbone", "dataset", "probe"), pl.Utf8)
    ).drop_nulls()
    if unscored:
        log.warning(
            "%d final run(s) without %s or failed/killed: left out (missing cells)",
            len(unscored),
            METRIC,
        )
    if not rows:
        raise ReportError(
            f"MLflow experiment {experiment!r} has no finished runs tagged stage='final' with "
            f"metric {METRIC!r}; run the sweep's final stage first."
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
