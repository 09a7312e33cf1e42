"""MLflow tracking of a sweep: one run per sweep, a nested run per study, a nested run per trial.

:class:`SweepTracker` lives in the driver (no Ray, no actor). It is built to stay cheap and
true at paper scale (~48,000 runs on one server):

- every run carries the sweep's identity (tag ``sweep_id``, plus ``sweep_name`` and
  ``out_dir``); the resolved config is a JSON artifact and flattened params of the sweep run;
- runs are found by their stable keys (sweep id; study id; trial key ``<study>/search/<n>`` or
  ``<study>/final/<config>-<seed>``) with one indexed ``search_runs`` per study, then cached, so
  a resumed sweep reuses its runs instead of duplicating them;
- params, metrics and tags are buffered and written with ``log_batch`` (one request per run per
  flush) when the buffer is large or old, when a trial ends and when a study ends; a run is
  created with all its tags in one request;
- ``close_stale`` marks the runs a killed driver left RUNNING as KILLED;
- what a person compares in the UI (names ``backbone·dataset·probe·seed0``, a ``state`` tag,
  MLflow's system tags, dataset inputs, the experiment's description) comes from
  :mod:`orchestrator.mlflow_ui`; names are for reading only, never for finding a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_TAG_VAL_LENGTH

from orchestrator import mlflow_ui

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
TERMINAL = ("FINISHED", "FAILED", "KILLED")
_PAGE = 1000
_BAD_KEY_CHARS = re.compile(r"[^\w\-. /:]")


def make_sweep_id(name: str, overrides: Iterable[str], out_dir: str | Path) -> str:
    """The id of a sweep: its name, its sorted overrides and its output folder, hashed.

    What the user chose, not the resolved config: a code change that adds a config default
    keeps the id (a re-submission resumes the same MLflow runs), while a different override
    (``train.epochs=3`` vs 5) or another output folder is another sweep.
    """
    blob = json.dumps([name, sorted(overrides), str(out_dir)])
    return f"{name}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def config_sha(config: Mapping[str, Any]) -> str:
    """A short hash of the resolved config (logged to tell a changed config apart)."""
    return hashlib.sha256(_json(config).encode()).hexdigest()[:12]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _key(name: str) -> str:
    return _BAD_KEY_CHARS.sub("_", name)[:250]


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts as dotted param names; other values as strings (MLflow's length limit)."""
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for key, sub in value.items():
            out.update(flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    text = value if isinstance(value, str) else _json(value) if value is not None else "None"
    return {_key(prefix): text[:MAX_PARAM_VAL_LENGTH]}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class _Run:
    """What the tracker knows about one run (from the store or from its own writes)."""

    run_id: str
    status: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)  # buffered
    new_params: dict[str, str] = field(default_factory=dict)  # buffered
    new_tags: dict[str, str] = field(default_factory=dict)  # buffered

    def pending(self) -> int:
        return len(self.metrics) + len(self.new_params) + len(self.new_tags)


class SweepTracker:
    """The MLflow runs of one sweep, written from the driver (see the module docstring); one
    thread calls it.

    ``flush_seconds``/``flush_metrics``: buffered writes go out once the oldest is that old or
    that many metrics wait (and always at trial end, study end, ``flush`` and ``close``).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment: str,
        *,
        sweep_id: str,
        sweep_name: str,
        out_dir: str | Path,
        config: Mapping[str, Any],
        artifact_location: str | None = None,
        flush_seconds: float = 10.0,
        flush_metrics: int = 1000,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.sweep_id = sweep_id
        self.flush_seconds = flush_seconds
        self.flush_metrics = flush_metrics
        self.base_tags = {"sweep_id": sweep_id, "sweep_name": sweep_name, "out_dir": str(out_dir)}
        self.config = dict(config)
        self.system_tags = mlflow_ui.system_tags()
        self.experiment_id = self._experiment(experiment, artifact_location)
        self._labels: dict[str, str] = {}  # study id -> its run-name label (unique in the sweep)
        self._datasets: dict[str, dict[str, Any]] = {}  # study id -> its dataset input
        self._runs: dict[str, _Run] = {}  # by key: "sweep", "study:<id>" or a trial key
        self._trials: dict[str, dict[str, str]] = {}  # study id -> {trial key: stage}
        self._loaded: set[str] = set()  # studies whose runs were read from the store
        self._mine: set[str] = set()  # run ids this tracker created or reopened
        self._oldest: float | None = None
        self.sweep_run_id = self._sweep_run(sweep_name)

    # -- runs ---------------------------------------------------------------------------------

    def _experiment(self, name: str, artifact_location: str | None) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None and found.lifecycle_stage == "deleted":
            raise MlflowException(
                f"MLflow experiment {name!r} at {self.tracking_uri} is deleted; restore it "
                f"(mlflow experiments restore --experiment-id {found.experiment_id}) or use "
                "another experiment name."
            )
        if found is None:
            try:
                self.client.create_experiment(name, artifact_location=artifact_location)
            except MlflowException:  # created meanwhile by another process
                pass
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise MlflowException(f"MLflow experiment {name!r} could not be created")
        # a kind (else MLflow 3's UI asks whether it is a GenAI one) and a description; a
        # description the user edited in the UI is kept
        if found.tags.get(mlflow_ui.KIND_TAG) is None:
            self.client.set_experiment_tag(found.experiment_id, mlflow_ui.KIND_TAG, mlflow_ui.KIND)
        if not found.tags.get(mlflow_ui.NOTE_TAG):
            note = mlflow_ui.describe(name, self.config)
            self.client.set_experiment_tag(found.experiment_id, mlflow_ui.NOTE_TAG, note)
        return found.experiment_id

    def _search(self, query: str) -> list[Any]:
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], filter_string=query, max_results=_PAGE, page_token=token
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _remember(self, key: str, run: Any) -> _Run:
        known = _Run(run.info.run_id, run.info.status, dict(run.data.params), dict(run.data.tags))
        self._runs[key] = known
        return known

    def _create(
        self,
        key: str,
        name: str,
        tags: Mapping[str, Any],
        parent: str | None,
        start_time: float | None = None,
    ) -> _Run:
        all_tags = {**self.system_tags, **{k: str(v) for k, v in tags.items()}, **self.base_tags}
        if parent:
            all_tags[PARENT_TAG] = parent
        all_tags = {_key(k): v[:MAX_TAG_VAL_LENGTH] for k, v in all_tags.items()}
        start = int(start_time * 1000) if start_time else None
        run = self.client.create_run(
            self.experiment_id, start_time=start, run_name=name, tags=all_tags
        )
        known = _Run(run.info.run_id, "RUNNING", {}, all_tags)
        self._runs[key] = known
        self._mine.add(known.run_id)
        return known

    def _reopen(self, run: _Run) -> None:
        if run.status != "RUNNING":
            self._set_status(run.run_id, "RUNNING")
            run.status = "RUNNING"
        self._mine.add(run.run_id)

    def _sweep_run(self, sweep_name: str) -> str:
        from orchestrator.provenance import provenance_tags

        found = self._search(f"tags.sweep_id = '{self.sweep_id}' and tags.kind = 'sweep'")
        sha = config_sha(self.config)
        if found:
            run = self._remember("sweep", found[0])
            self._reopen(run)
            if run.tags.get("config_sha") != sha:
                log.warning(
                    "the resolved config of sweep %s changed since it started (config_sha %s, "
                    "now %s: code or YAML changed); its runs continue, config-%s.json logged",
                    self.sweep_id,
                    run.tags.get("config_sha"),
                    sha,
                    sha,
                )
                self._tag(run, {"config_sha": sha})
                self.client.log_dict(
                    run.run_id, json.loads(_json(self.config)), f"config-{sha}.json"
                )
                self._write(run)
            return run.run_id
        tags = {"kind": "sweep", "config_sha": sha, **provenance_tags()}
        run = self._create("sweep", sweep_name, tags, None)
        run.new_params.update(flatten(self.config, "config"))
        self.client.log_dict(run.run_id, json.loads(_json(self.config)), "config.json")
        self._write(run)
        return run.run_id

    def _load_study(self, study_id: str) -> None:
        """One search for a study's own run and all its trial runs (resume, idempotency)."""
        if study_id in self._loaded:
            return
        self._loaded.add(study_id)
        trials = self._trials.setdefault(study_id, {})
        query = f"tags.sweep_id = '{self.sweep_id}' and tags.study_id = '{study_id}'"
        for run in sorted(self._search(query), key=lambda r: r.info.start_time or 0):
            kind, key = run.data.tags.get("kind"), run.data.tags.get("trial_key")
            if kind == "study":
                self._remember(f"study:{study_id}", run)
            elif kind == "trial" and key:
                self._remember(key, run)
                trials[key] = run.data.tags.get("stage", "")

    def _label(self, study_id: str, tags: Mapping[str, Any]) -> str:
        """``backbone·dataset·probe`` of a study; its id when another study has that label."""
        if study_id not in self._labels:
            label = mlflow_ui.study_label(tags, study_id)
            if label in self._labels.values():
                label = study_id
            self._labels[study_id] = label
        return self._labels[study_id]

    def study_run(
        self,
        study_id: str,
        tags: Mapping[str, Any],
        dataset: Mapping[str, Any] | None = None,
    ) -> str:
        """The run of a study (created under the sweep run, or the one a resumed sweep made).
        ``dataset`` (name, version, digest, split sizes): logged as the input of its final runs."""
        if dataset is not None:
            self._datasets[study_id] = dict(dataset)
        self._load_study(study_id)
        run = self._runs.get(f"study:{study_id}")
        if tags:
            self._label(study_id, tags)
        if run is None:
            tags = {**tags, "kind": "study", "study_id": study_id}
            name = self._label(study_id, tags)
            run = self._create(f"study:{study_id}", name, tags, self.sweep_run_id)
        elif run.status in ("FAILED", "KILLED"):  # running again
            self._reopen(run)
        return run.run_id

    def trial_started(
        self,
        study_id: str,
        trial_key: str,
        stage: str,
        params: Mapping[str, Any],
        tags: Mapping[str, Any],
        start_time: float | None = None,
    ) -> str:
        """The run of a trial, created (or reopened, when a resumed sweep reruns it) RUNNING.
        ``start_time`` (epoch seconds): when the trial started on its worker (a packed trial
        is reported after it ran).

        Params: the study's ``epochs`` and ``batch_size`` plus ``params`` (the searched values,
        seed, ...), only as params (the UI's charts plot params). A final run gets its study's
        dataset as its input. The run's name is ``backbone·dataset·probe·search-<n>`` or
        ``...·seed<s>`` (for reading: the run is found by its ``trial_key`` tag). A
        rerun with different params (a non-reproducible search) supersedes the old run: it is
        re-keyed ``<key>~superseded`` and KILLED, and a new run takes the key.
        """
        parent = self.study_run(study_id, {})
        train = self.config.get("train") or {}
        values = {k: train[k] for k in ("epochs", "batch_size") if k in train}
        values.update(params)
        flat = flatten(values)
        run = self._runs.get(trial_key)
        if run is not None:
            clash = {k for k, v in flat.items() if k in run.params and run.params[k] != v}
            if clash:
                log.warning(
                    "trial %s reruns with other params (%s): its earlier run %s is superseded",
                    trial_key,
                    ", ".join(sorted(clash)),
                    run.run_id,
                )
                self._tag(run, {"trial_key": f"{trial_key}~superseded", "superseded": "true"})
                self._write(run)
                if run.status != "KILLED":
                    self._set_status(run.run_id, "KILLED")
                del self._runs[trial_key]
                run = None
        if run is None:
            run_tags = {**tags, "kind": "trial", "stage": stage}
            if stage == "final":  # until its study selects it (then one write per seed)
                run_tags["selected"] = "false"
            run_tags.update(study_id=study_id, trial_key=trial_key)
            name = mlflow_ui.trial_name(self._label(study_id, tags), study_id, trial_key)
            run = self._create(trial_key, name, run_tags, parent, start_time)
            if stage == "final" and study_id in self._datasets:
                dataset = mlflow_ui.dataset_input(tags, self._datasets[study_id])
                self.client.log_inputs(run.run_id, datasets=[dataset])
        else:
            restarts = int(run.tags.get("restarts", "0")) + (run.status != "RUNNING")
            self._reopen(run)
            if restarts:
                self._tag(run, {"restarts": str(restarts)})
        self._trials.setdefault(study_id, {})[trial_key] = stage
        run.new_params.update({k: v for k, v in flat.items() if k not in run.params})
        self._touch()
        return run.run_id

    def trial_result(self, trial_key: str, metrics: Mapping[str, Any], step: int) -> None:
        """Buffer one report of a trial (finite numbers only)."""
        run = self._trial(trial_key)
        run.metrics += _metrics(metrics, step)
        self._touch()

    def tag_trial(self, trial_key: str, tags: Mapping[str, Any]) -> None:
        """Buffer tags of a trial's run (e.g. ``pruned``)."""
        self._tag(self._trial(trial_key), tags)

    def trial_finished(
        self, trial_key: str, status: str, error: str = "", end_time: float | None = None
    ) -> None:
        """Write the trial's buffer and close its run (written through, not buffered);
        ``end_time`` (epoch seconds): when it ended on its worker (default: now). Tag
        ``state``: ``finished``, ``failed`` (tag ``error``: why) or, for a run closed KILLED to
        run again, ``retried`` (a pruned trial is re-tagged by :meth:`tag_trial`)."""
        status = _status(status)
        run = self._trial(trial_key)
        state = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "retried"}[status]
        self._tag(run, {"state": state})
        if error:
            self._tag(run, {"error": error[-MAX_TAG_VAL_LENGTH:]})
        self._write(run)
        self._set_status(run.run_id, status, end_time)
        run.status = status

    def study_finished(
        self,
        study_id: str,
        status: str,
        *,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        selected: Iterable[str] = (),
        tags: Mapping[str, Any] | None = None,
        chosen_config: Mapping[str, Any] | None = None,
    ) -> None:
        """Close a study: tag its final runs ``selected`` true/false, the search runs whose
        params are the ``chosen_config`` ``chosen=true``, log its summary (``params``,
        ``metrics`` and ``tags`` of the study run).

        Every selected key must name a FINISHED final run of the study; one that does not (its
        driver died between the trial's record and its MLflow close) is warned about.
        """
        status = _status(status)
        self._load_study(study_id)
        chosen = set(selected)
        finals = {k for k, stage in self._trials.get(study_id, {}).items() if stage == "final"}
        for key in sorted(finals | chosen):
            run = self._runs.get(key)
            if run is None:
                log.warning("study %s: selected trial %s has no MLflow run", study_id, key)
                continue
            if key in chosen and run.status != "FINISHED":
                log.warning(
                    "study %s: selected trial %s has MLflow status %s, not FINISHED",
                    study_id,
                    key,
                    run.status,
                )
            self._tag(run, {"selected": str(key in chosen).lower()})
        if chosen_config:
            want = flatten(dict(chosen_config))
            for key, stage in self._trials.get(study_id, {}).items():
                run = self._runs.get(key)
                if run is None or stage != "search":
                    continue
                if all(run.params.get(k, run.new_params.get(k)) == v for k, v in want.items()):
                    self._tag(run, {"chosen": "true"})
        if f"study:{study_id}" not in self._runs:
            self.study_run(study_id, {})
        study = self._runs[f"study:{study_id}"]
        self._tag(study, dict(tags or {}))
        study.new_params.update(
            {k: v for k, v in flatten(dict(params or {})).items() if k not in study.params}
        )
        study.metrics += _metrics(metrics or {}, 0)
        self.flush()
        self._set_status(study.run_id, status)
        study.status = status

    def close_stale(self) -> int:
        """Mark the runs of this sweep left RUNNING by a killed driver KILLED; return how many."""
        stale = [
            run
            for run in self._search(
                f"tags.sweep_id = '{self.sweep_id}' and attributes.status = 'RUNNING'"
            )
            if run.info.run_id not in self._mine
        ]
        for run in stale:
            self.client.set_tag(run.info.run_id, "closed_by", "close_stale (driver was killed)")
            self._set_status(run.info.run_id, "KILLED")
            for known in self._runs.values():
                if known.run_id == run.info.run_id:
                    known.status = "KILLED"
        if stale:
            log.info("MLflow: %d runs left RUNNING by a killed driver marked KILLED", len(stale))
        return len(stale)

    def log_artifacts(self, run_id: str, paths: Iterable[str | Path], artifact_path: str) -> None:
        """Upload files (and folders, under their own name) to a run's ``artifact_path``."""
        for path in map(Path, paths):
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), f"{artifact_path}/{path.name}")
            elif path.exists():
                self.client.log_artifact(run_id, str(path), artifact_path)
            else:
                log.warning("artifact %s does not exist; not logged", path)

    def log_sweep(
        self, *, metrics: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None
    ) -> None:
        """Buffer summary metrics/tags on the sweep run (written at the next flush)."""
        run = self._runs["sweep"]
        run.metrics += _metrics(metrics or {}, 0)
        self._tag(run, dict(tags or {}))
        self._touch()

    def log_probe_model(self, study_id: str, probe_path: Path) -> str:
        """The selected probe of a study as a logged model of its study run (its model id)."""
        run_id = self.study_run(study_id, {})
        name = self._labels.get(study_id, study_id)
        return mlflow_ui.log_probe_model(
            self.client, self.experiment_id, run_id, Path(probe_path), name
        )

    def log_report(self, paths: Mapping[str, Path], results: Any) -> None:
        """The report on the sweep run as tables, images and metrics (see
        :func:`orchestrator.mlflow_ui.log_report`)."""
        mlflow_ui.log_report(self.client, self.sweep_run_id, paths, results)

    def flush(self) -> None:
        """Write every buffered param, metric and tag (one ``log_batch`` per run)."""
        for run in self._runs.values():
            if run.pending():
                self._write(run)
        self._oldest = None

    def close(self, status: str = "FINISHED") -> None:
        """Flush and close the sweep run."""
        self.flush()
        status = _status(status)
        self._set_status(self.sweep_run_id, status)
        self._runs["sweep"].status = status

    def _set_status(self, run_id: str, status: str, end_time: float | None = None) -> None:
        """One request. ``set_terminated``/``update_run`` also GET the run first (and
        ``set_terminated`` prints its URL for a server): twice the requests at 48,000 runs."""
        store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
        if store is None:
            self.client.update_run(run_id, status=status)
            return
        end = None if status == "RUNNING" else int((end_time or time.time()) * 1000)
        store.update_run_info(
            run_id, run_status=RunStatus.from_string(status), end_time=end, run_name=None
        )

    # -- buffer -------------------------------------------------------------------------------

    def _trial(self, trial_key: str) -> _Run:
        run = self._runs.get(trial_key)
        if run is None:
            raise KeyError(f"trial {trial_key!r} was never started (call trial_started first)")
        return run

    def _tag(self, run: _Run, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            value = str(value)[:MAX_TAG_VAL_LENGTH]
            if run.tags.get(key) != value:
                run.new_tags[_key(key)] = value

    def _write(self, run: _Run) -> None:
        if not run.pending():
            return
        self.client.log_batch(
            run.run_id,
            metrics=run.metrics,
            params=[Param(k, v) for k, v in run.new_params.items()],
            tags=[RunTag(k, v) for k, v in run.new_tags.items()],
        )
        run.params.update(run.new_params)
        run.tags.update(run.new_tags)
        run.metrics, run.new_params, run.new_tags = [], {}, {}

    def _touch(self) -> None:
        now = time.monotonic()
        if self._oldest is None:
            self._oldest = now
        waiting = sum(len(run.metrics) for run in self._runs.values())
        if waiting >= self.flush_metrics or now - self._oldest >= self.flush_seconds:
            self.flush()


def _metrics(values: Mapping[str, Any], step: int, prefix: str = "") -> list[Metric]:
    """The finite numbers of ``values`` as metrics at ``step`` (now)."""
    now = int(time.time() * 1000)
    out = []
    for name, value in values.items():
        number = _number(value)
        if number is not None:
            out.append(Metric(_key(f"{prefix}{name}"), number, now, int(step)))
    return out


def _status(status: str) -> str:
    status = str(status).upper()
    if status not in TERMINAL:
        raise ValueError(f"run status {status!r}: use one of {', '.join(TERMINAL)}")
    RunStatus.from_string(status)
    return status


def ui_hint(tracking_uri: str, experiment_id: str | None = None) -> str:
    """How to look at the runs: a command for a local store, an address for a server."""
    if tracking_uri.startswith(("http://", "https://")):
        # the runs table in MLflow 3's "Model training" mode (it opens on GenAI otherwise)
        ml = "?workflowType=machine_learning"
        page = f"/#/experiments/{experiment_id}/runs{ml}" if experiment_id else f"/#/{ml}"
        return f"MLflow UI: open {tracking_uri.rstrip('/')}{page}"
    if tracking_uri.startswith(("sqlite:", "postgresql", "mysql", "mssql")):
        return f"MLflow UI: mlflow ui --backend-store-uri {tracking_uri}"
    return f"MLflow: {tracking_uri}"
