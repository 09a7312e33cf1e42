"""MLflow tracking: an experiment per sweep, a run per study, every trial a nested child run.

All MLflow writes go through one tracking actor on the driver's node (Tune callbacks in the
study tasks call it), so a local sqlite store never sees concurrent writers and the workers
need no MLflow credentials. Runs are found by tags before they are created, so a resumed
sweep adds to its runs instead of duplicating them.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray.tune import Callback

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
MAX_PARAM_LEN = 6000


def _flat(prefix: str, value: Any) -> dict[str, str]:
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, sub in value.items():
            out.update(_flat(f"{prefix}.{key}" if prefix else str(key), sub))
        return out
    return {prefix: str(value)[:MAX_PARAM_LEN]}


class Tracker:
    """Thin layer over :class:`MlflowClient` with find-or-create semantics."""

    def __init__(
        self, tracking_uri: str, experiment: str, artifact_location: str | None = None
    ) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        self.experiment_id = (
            found.experiment_id
            if found
            else self.client.create_experiment(experiment, artifact_location=artifact_location)
        )

    def find_run(self, **tags: str) -> str | None:
        query = " and ".join(f"tags.{k} = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs([self.experiment_id], filter_string=query, max_results=1)
        return runs[0].info.run_id if runs else None

    def ensure_run(
        self, name: str, tags: dict[str, str], parent: str | None = None, **key: str
    ) -> str:
        """Return the run carrying ``key`` tags, creating it (with ``tags``) if absent."""
        run_id = self.find_run(**key)
        if run_id is None:
            all_tags = {**tags, **key}
            if parent:
                all_tags[PARENT_TAG] = parent
            run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
            run_id = run.info.run_id
        return run_id

    def log(
        self,
        run_id: str,
        params: dict[str, Any] | None = None,
        metrics: dict[str, float] | None = None,
        tags: dict[str, Any] | None = None,
        step: int = 0,
    ) -> None:
        now = int(time.time() * 1000)
        flat = _flat("", params or {})
        existing = self.client.get_run(run_id).data.params if flat else {}
        self.client.log_batch(
            run_id,
            metrics=[
                Metric(k, float(v), now, step)
                for k, v in (metrics or {}).items()
                if isinstance(v, (int, float)) and math.isfinite(float(v))
            ],
            params=[Param(k, v) for k, v in flat.items() if k not in existing],
            tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
        )

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def log_artifacts(
        self, run_id: str, paths: list[Path], artifact_path: str | None = None
    ) -> None:
        for path in paths:
            self.client.log_artifact(run_id, str(path), artifact_path)


TRACKER_ACTOR = "unmute-mlflow-tracker"


class TrackerClient:
    """Forwards :class:`Tracker` calls to the one tracking actor of the sweep (by name), so
    study tasks anywhere in the cluster log through a single MLflow writer."""

    def __init__(self, tracking_uri: str, name: str = TRACKER_ACTOR) -> None:
        self.tracking_uri = tracking_uri
        self.name = name

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)
        import ray

        actor = ray.get_actor(self.name)

        def call(*args, **kwargs):
            return ray.get(actor.call.remote(method, *args, **kwargs))

        return call


class TrackingActor:
    """Ray actor body owning the MLflow client (``ray.remote(TrackingActor)``)."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_location: str | None) -> None:
        self.tracker = Tracker(tracking_uri, experiment, artifact_location)

    def call(self, method: str, *args, **kwargs):
        return getattr(self.tracker, method)(*args, **kwargs)


def start_tracking_actor(
    tracking_uri: str, experiment: str, artifact_location: str | None = None
) -> TrackerClient:
    """Start the sweep's tracking actor (0 CPUs, on the driver's node, where a local sqlite
    store and the report files are) and return a client for it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    client = TrackerClient(tracking_uri)
    # The driver holds the handle: a named actor lives as long as a handle to it does.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    client._handle = (
        ray.remote(TrackingActor)
        .options(name=TRACKER_ACTOR, num_cpus=0, scheduling_strategy=here)
        .remote(tracking_uri, experiment, artifact_location)
    )
    return client


class TrialTracker(Callback):
    """Ray Tune callback logging each trial of one study stage as a nested MLflow run."""

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        parent_run_id: str,
        tags: dict[str, str],
        stage: str,
        max_epochs: int,
        spec: Any = None,
    ) -> None:
        self.spec = spec
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.parent_run_id = parent_run_id
        self.tags = tags
        self.stage = stage
        self.max_epochs = max_epochs
        self._tracker: TrackerClient | None = None
        self._runs: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tracker"] = None
        return state

    @property
    def tracker(self) -> TrackerClient:
        if self._tracker is None:
            self._tracker = TrackerClient(self.tracking_uri)
        return self._tracker

    def _run_for(self, trial) -> str:
        if trial.trial_id not in self._runs:
            config = dict(trial.config)
            tags = {**self.tags, "stage": self.stage}
            if self.spec is not None:  # final trials name a (config, seed) cell: log its content
                from orchestrator.trial import resolve_params

                params, seed = resolve_params(config, self.spec)
                config = {**params, "seed": seed}
                tags["seed"] = str(seed)
            run_id = self.tracker.ensure_run(
                f"{self.stage}-{trial.trial_id}",
                tags,
                parent=self.parent_run_id,
                trial_id=trial.trial_id,
                study_id=self.tags["study_id"],
            )
            self.tracker.log(run_id, params=config)
            self._runs[trial.trial_id] = run_id
        return self._runs[trial.trial_id]

    def mark_killed(self, trial_ids: list[str]) -> None:
        """Close the runs of trials a killed driver left running (their rerun is a new trial)."""
        for trial_id in trial_ids:
            run_id = self.tracker.find_run(trial_id=trial_id, study_id=self.tags["study_id"])
            if run_id:
                self.tracker.log(
                    run_id, tags={"superseded": "driver stopped; rerun as a new trial"}
                )
                self.tracker.finish(run_id, "KILLED")

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._run_for(trial)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        metrics = {
            k: v
            for k, v in result.items()
            if k.startswith(("val_", "test_", "train_")) and isinstance(v, (int, float))
        }
        tags = {"seed": result["seed"]} if "seed" in result else None
        self.tracker.log(
            self._run_for(trial), metrics=metrics, tags=tags, step=int(result.get("epoch", 0))
        )

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        epochs = int((trial.last_result or {}).get("epoch", 0))
        pruned = self.stage == "search" and epochs < self.max_epochs
        run_id = self._run_for(trial)
        self.tracker.log(run_id, tags={"pruned": pruned, "epochs_run": epochs})
        self.tracker.finish(run_id, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        error = ""
        if trial.error_file and Path(trial.error_file).exists():
            error = Path(trial.error_file).read_text()[-4000:]
        run_id = self._run_for(trial)
        self.tracker.log(run_id, tags={"error": error or "unknown error (see Ray logs)"})
        self.tracker.finish(run_id, "FAILED")
        log.warning(
            "trial %s of %s failed: %s",
            trial.trial_id,
            self.tags["study_id"],
            error.strip().splitlines()[-1] if error.strip() else "see Ray logs",
        )
