"""Bridge for studies that run as Ray tasks: a named actor owns the sweep's SweepTracker.

While each study is a Ray task (``orchestrator.study``), its Tune callbacks cannot reach the
driver's :class:`~orchestrator.tracking.SweepTracker`; they call it through one actor on the
driver's node (a local sqlite store never sees two writers; workers need no MLflow access).
A scheduler that drives Tune from the driver uses ``SweepTracker`` directly and needs none of
this module.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ray.tune import Callback

log = logging.getLogger(__name__)

TRACKER_ACTOR = "unmute-mlflow-tracker"


class TrackerClient:
    """Forwards SweepTracker calls to the sweep's tracking actor (found by name)."""

    def __init__(self, name: str = TRACKER_ACTOR) -> None:
        self.name = name

    def __getattr__(self, method: str):
        if method.startswith("_"):
            raise AttributeError(method)
        import ray

        actor = ray.get_actor(self.name)

        if method in ("sweep_run_id", "experiment_id", "sweep_id"):
            return ray.get(actor.call.remote(method))

        def call(*args, **kwargs):
            return ray.get(actor.call.remote(method, *args, **kwargs))

        return call


class TrackingActor:
    """Ray actor body owning the SweepTracker (``ray.remote(TrackingActor)``)."""

    def __init__(self, tracking_uri: str, experiment: str, **kwargs: Any) -> None:
        from orchestrator.tracking import SweepTracker

        self.tracker = SweepTracker(tracking_uri, experiment, **kwargs)

    def call(self, name: str, *args, **kwargs):
        attr = getattr(self.tracker, name)  # a method, or a plain attribute (sweep_run_id)
        return attr(*args, **kwargs) if callable(attr) else attr


def start_tracking_actor(tracking_uri: str, experiment: str, **kwargs: Any) -> TrackerClient:
    """Start the sweep's tracking actor (0 CPUs, on the driver's node) and return a client;
    ``kwargs`` are SweepTracker's (sweep_id, sweep_name, out_dir, config, artifact_location)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    client = TrackerClient()
    # The driver holds the handle: a named actor lives as long as a handle to it does.
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    client._handle = (
        ray.remote(TrackingActor)
        .options(name=TRACKER_ACTOR, num_cpus=0, scheduling_strategy=here)
        .remote(tracking_uri, experiment, **kwargs)
    )
    return client


def search_key(study_id: str, experiment_tag: str, offset: int) -> str:
    """Stable key of a search trial: Tune's searcher numbers the trials of an experiment in
    creation order from 1 (``experiment_tag`` ``"3_lr=..."``); earlier attempts of the stage
    started ``offset`` trials."""
    return f"{study_id}/search/{offset + int(experiment_tag.split('_', 1)[0]) - 1}"


def final_key(study_id: str, config_index: int, seed: int) -> str:
    return f"{study_id}/final/{config_index}-{seed}"


class TrialTracker(Callback):
    """Ray Tune callback logging each trial of one study stage through the tracking actor."""

    def __init__(
        self, study_id: str, tags: dict[str, str], stage: str, spec: Any, offset: int = 0
    ) -> None:
        self.study_id = study_id
        self.tags = tags
        self.stage = stage
        self.spec = spec
        self.offset = offset
        self._tracker: TrackerClient | None = None
        self._keys: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_tracker"] = None
        return state

    @property
    def tracker(self) -> TrackerClient:
        if self._tracker is None:
            self._tracker = TrackerClient()
        return self._tracker

    def _key(self, trial) -> str:
        if trial.trial_id not in self._keys:
            from orchestrator.trial import resolve_params

            params, seed = resolve_params(dict(trial.config), self.spec)
            tags = dict(self.tags)
            if self.stage == "final":
                index = self.spec.cells[int(trial.config["cell"])][0]
                key = final_key(self.study_id, index, seed)
                params = {**params, "seed": seed}
                tags |= {"seed": str(seed), "config_index": str(index)}
            else:
                key = search_key(self.study_id, trial.experiment_tag, self.offset)
            self.tracker.trial_started(
                self.study_id, key, self.stage, params, tags | {"tune_trial_id": trial.trial_id}
            )
            self._keys[trial.trial_id] = key
        return self._keys[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._key(trial)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        metrics = {
            k: v
            for k, v in result.items()
            if k.startswith(("val_", "test_", "train_")) and isinstance(v, (int, float))
        }
        self.tracker.trial_result(self._key(trial), metrics, int(result.get("epoch", 0)))

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        epochs = int((trial.last_result or {}).get("epoch", 0))
        key = self._key(trial)
        pruned = self.stage == "search" and epochs < self.spec.epochs
        self.tracker.tag_trial(key, {"pruned": str(pruned).lower(), "epochs_run": epochs})
        self.tracker.trial_finished(key, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        error = ""
        if trial.error_file and Path(trial.error_file).exists():
            error = Path(trial.error_file).read_text()[-4000:]
        self.tracker.trial_finished(
            self._key(trial), "FAILED", error or "unknown error (see Ray logs)"
        )
        log.warning(
            "trial %s of %s failed: %s",
            trial.trial_id,
            self.study_id,
            error.strip().splitlines()[-1] if error.strip() else "see Ray logs",
        )
