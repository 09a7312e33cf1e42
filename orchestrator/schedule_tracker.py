"""A stand-in for ``orchestrator.tracking.SweepTracker`` (the agreed interface) over MLflow.

The schedule logs through the driver-side ``SweepTracker`` interface: one sweep run, a run per
study nested under it, a run per trial nested under its study, all found by stable keys
(``sweep_id``, ``study_id``, ``trial_key``) so a resumed sweep reuses its runs instead of
duplicating them, and per-epoch metrics buffered and written in batches. The tracking module
provides the full implementation; :func:`sweep_tracker` prefers it and falls back to this one.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LEN = 6000
BATCH = 900  # MLflow accepts up to 1000 metrics per log_batch


def _flat(prefix: str, value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, sub in value.items():
            out.update(_flat(f"{prefix}.{key}" if prefix else str(key), sub))
        return out
    return {prefix: str(value)[:MAX_PARAM_LEN]}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class SweepTracker:
    """The sweep's MLflow runs, written from the driver only (see module docstring)."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        *,
        sweep_id: str,
        sweep_name: str,
        out_dir: str,
        config: dict,
        artifact_location: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            found.experiment_id
            if found
            else self.client.create_experiment(experiment, artifact_location=artifact_location)
        )
        self.sweep_id = sweep_id
        self._runs: dict[str, str] = {}  # key -> run id
        self._pending: dict[str, list[Metric]] = {}
        known = self._search(f"tags.sweep_id = '{sweep_id}'")
        for run in known:
            key = run.data.tags.get("trial_key") or run.data.tags.get("run_key")
            if key:
                self._runs[key] = run.info.run_id
        tags = {"kind": "sweep", "sweep": sweep_name, "out_dir": str(out_dir)}
        self.sweep_run_id = self._ensure("sweep", f"{sweep_name}-sweep", tags, None)
        self._log(self.sweep_run_id, params=config)

    def _search(self, query: str) -> list:
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=query, max_results=5000, page_token=token
            )
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def _ensure(self, key: str, name: str, tags: dict[str, Any], parent: str | None) -> str:
        run_id = self._runs.get(key)
        if run_id is not None:
            if self.client.get_run(run_id).info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
            return run_id
        all_tags = {**{k: str(v) for k, v in tags.items()}, "sweep_id": self.sweep_id}
        all_tags["trial_key" if "/" in key else "run_key"] = key
        if parent:
            all_tags[PARENT_TAG] = parent
        run_id = self.client.create_run(
            self.experiment_id, run_name=name, tags=all_tags
        ).info.run_id
        self._runs[key] = run_id
        return run_id

    def _log(self, run_id: str, params=None, metrics=None, tags=None, step: int = 0) -> None:
        now = int(time.time() * 1000)
        flat = _flat("", params or {})
        existing = self.client.get_run(run_id).data.params if flat else {}
        self.client.log_batch(
            run_id,
            metrics=[
                Metric(k, float(v), now, step) for k, v in (metrics or {}).items() if _finite(v)
            ],
            params=[Param(k, v) for k, v in flat.items() if k not in existing],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    def study_run(self, study_id: str, tags: dict) -> str:
        key = f"study:{study_id}"
        return self._ensure(
            key, study_id, {**tags, "kind": "study", "study_id": study_id}, self.sweep_run_id
        )

    def trial_started(
        self, study_id: str, trial_key: str, stage: str, params: dict, tags: dict
    ) -> str:
        parent = self.study_run(study_id, {})
        run_id = self._ensure(
            trial_key,
            f"{stage}-{trial_key.split('/', 1)[1].replace('/', '-')}",
            {**tags, "kind": "trial", "stage": stage, "study_id": study_id, "trial_id": trial_key},
            parent,
        )
        self._log(run_id, params=params)
        return run_id

    def trial_result(self, trial_key: str, metrics: dict, step: int) -> None:
        now = int(time.time() * 1000)
        self._pending.setdefault(trial_key, []).extend(
            Metric(k, float(v), now, step) for k, v in metrics.items() if _finite(v)
        )

    def _flush_key(self, trial_key: str) -> None:
        metrics = self._pending.pop(trial_key, [])
        run_id = self._runs.get(trial_key)
        for start in range(0, len(metrics), BATCH):
            if run_id:
                self.client.log_batch(run_id, metrics=metrics[start : start + BATCH])

    def trial_finished(self, trial_key: str, status: str, error: str = "") -> None:
        self._flush_key(trial_key)
        run_id = self._runs.get(trial_key)
        if run_id is None:
            return
        if error:
            self._log(run_id, tags={"error": error[-4000:]})
        self.client.set_terminated(run_id, status=status)

    def study_finished(
        self, study_id: str, status: str, *, params=None, metrics=None, selected=()
    ) -> None:
        run_id = self._runs.get(f"study:{study_id}") or self.study_run(study_id, {})
        chosen = set(selected)
        if chosen:
            prefix = f"{study_id}/final/"
            for key, trial_run in self._runs.items():
                if key.startswith(prefix):
                    self._log(trial_run, tags={"selected": str(key in chosen).lower()})
        self._log(run_id, params=params, metrics=metrics)
        self.client.set_terminated(run_id, status=status)

    def close_stale(self) -> int:
        """Runs of this sweep a killed driver left RUNNING are closed as KILLED."""
        stale = self._search(f"tags.sweep_id = '{self.sweep_id}' and attributes.status = 'RUNNING'")
        count = 0
        for run in stale:
            if run.info.run_id != self.sweep_run_id:
                self.client.set_terminated(run.info.run_id, status="KILLED")
                count += 1
        return count

    def log_artifacts(self, run_id: str, paths, artifact_path: str | None) -> None:
        for path in paths:
            self.client.log_artifact(run_id, str(Path(path)), artifact_path)

    def log(self, run_id: str, *, params=None, metrics=None, tags=None) -> None:
        self._log(run_id, params=params, metrics=metrics, tags=tags)

    def flush(self) -> None:
        for key in list(self._pending):
            self._flush_key(key)

    def close(self, status: str) -> None:
        self.flush()
        self.client.set_terminated(self.sweep_run_id, status=status)


def sweep_tracker(*args, **kwargs):
    """The tracking module's ``SweepTracker`` when it has one, else this stand-in."""
    try:
        from orchestrator.tracking import SweepTracker as Implementation
    except ImportError:
        Implementation = SweepTracker
    return Implementation(*args, **kwargs)
