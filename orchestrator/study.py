"""One study (encoder x dataset x probe) as two Ray Tune stages; runs inside a Ray task.

Stage "search" runs the Optuna search (Sobol then TPE) under ASHA; stage "final" reruns the
top-k configurations with every seed and scores the test split. Each run of a stage is a Tune
experiment ``<storage>/<study_id>/<stage>/attempt-<k>``; a re-run keeps the finished trials of
earlier attempts and runs only what is missing, so finished trials are never rerun. A study
writes no files of its own: it returns its trial table and result rows to the driver, and logs
through the tracking actor.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import polars as pl
from ray import tune

from orchestrator.config import SweepConfig
from orchestrator.paths import tune_filesystem
from orchestrator.plan import Study
from orchestrator.provenance import provenance_tags
from orchestrator.search import METRIC, MODE, load_space, make_scheduler, make_searcher
from orchestrator.tracking_ray import TrackerClient, TrialTracker, final_key
from orchestrator.trial import TrialSpec, resolve_params, run_trial, split_params

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Extracted:
    """What the driver knows about one (encoder, dataset) after extraction."""

    keys: dict[str, Any]  # split -> StoreKey
    weights_id: str
    dataset_version: str
    task: str
    metric: str
    num_classes: int
    skipped: int


@dataclass(frozen=True)
class StudyOutcome:
    trials: pl.DataFrame  # every search and final trial
    rows: pl.DataFrame  # the results rows: one per seed of the selected configuration
    error: str  # empty when the study finished


def _trainable(spec: TrialSpec, cfg: SweepConfig):
    """The trial function bound to ``spec``, under a name unique to the study and stage.

    Tune registers trainables by name in a registry shared by the whole Ray job; studies run
    concurrently, so a shared name would let one study's trials run with another's spec.
    """

    def trainable(config: dict[str, Any], spec: TrialSpec) -> None:
        run_trial(config, spec)

    digest = hashlib.sha1(f"{spec.study_id}/{spec.stage}".encode()).hexdigest()[:12]
    trainable.__name__ = trainable.__qualname__ = f"trial_{spec.stage}_{digest}"
    resources = {"cpu": cfg.ray.cpus_per_trial, "gpu": cfg.ray.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(trainable, spec=spec), resources)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _trial_rows(trials: list, spec: TrialSpec) -> list[dict[str, Any]]:
    """One row per Tune trial: status ok / error / unfinished, its last metrics and params."""
    rows = []
    for trial in trials:
        metrics = dict(trial.last_result or {})
        params, seed = resolve_params(dict(trial.config or {}), spec)
        status = {"TERMINATED": "ok", "ERROR": "error"}.get(trial.status, "unfinished")
        error = ""
        if status == "error":
            error = str(trial.get_error() or "unknown error")[-2000:]
        rows.append(
            {
                "trial_id": trial.trial_id,
                "stage": spec.stage,
                "status": status,
                "error": error,
                "epochs": int(metrics.get("epoch", 0) or 0),
                "device": str(metrics.get("device", "")),
                **{k: v for k, v in metrics.items() if k.startswith(("val_", "test_"))},
                "seed": seed,
                "cell": int(trial.config.get("cell", -1)),
                "config_index": spec.cells[int(trial.config["cell"])][0]
                if "cell" in trial.config
                else -1,
                **{f"param.{k}": v for k, v in params.items()},
            }
        )
    return rows


def _finished_attempts(base: str, spec: TrialSpec) -> tuple[list[dict[str, Any]], list[str], int]:
    """Rows of the finished trials of earlier attempts at this stage, the ids of the trials
    they left unfinished, and the number of the next attempt."""
    rows, unfinished, attempt = [], [], 0
    base, fs = tune_filesystem(base)
    while tune.Tuner.can_restore(f"{base}/attempt-{attempt}", storage_filesystem=fs):
        analysis = tune.ExperimentAnalysis(f"{base}/attempt-{attempt}", storage_filesystem=fs)
        for row in _trial_rows(analysis.trials, spec):
            if row["status"] == "unfinished":
                unfinished.append(row["trial_id"])
            else:
                rows.append(row)
        log.info("%s attempt %d: %d finished trials kept", base, attempt, len(rows))
        attempt += 1
    return rows, unfinished, attempt


def _run_stage(
    cfg: SweepConfig,
    spec: TrialSpec,
    tracker_cb: TrialTracker,
    *,
    space: tuple | None = None,
    scheduler=None,
    num_samples: int = 1,
) -> pl.DataFrame:
    """Run one stage of a study; a re-run keeps every finished trial of earlier attempts.

    Each attempt is its own Tune experiment (``<study>/<stage>/attempt-<k>``). Instead of
    restoring a killed experiment (whose searcher checkpoint can lag its trial list), a new
    attempt runs only what is missing: the search stage seeds Optuna with the finished trials
    and runs the remaining samples, the final stage runs the missing (config, seed) cells.
    Trials that were running when the driver died start again (trials keep no checkpoints).
    """
    base = f"{cfg.tune_storage.rstrip('/')}/{spec.study_id}/{spec.stage}"
    done, unfinished, attempt = _finished_attempts(base, spec)
    tracker_cb.offset = len(done) + len(unfinished)  # runs of unfinished trials: close_stale
    if spec.stage == "search":
        evaluated = [r for r in done if r["status"] == "ok" and _finite(r.get(METRIC))]
        searcher = make_searcher(
            space,
            cfg.search.startup_trials,
            points=[{k[6:]: v for k, v in r.items() if k.startswith("param.")} for r in evaluated],
            rewards=[r[METRIC] for r in evaluated],
            offset=len(done) + len(unfinished) - len(evaluated),
        )
        param_space, remaining = {}, num_samples - len(done)
    else:
        searcher = None
        finished = {r["cell"] for r in done if r["status"] == "ok"}  # failed cells are retried
        todo = [i for i in range(len(spec.cells)) if i not in finished]
        param_space, remaining = {"cell": tune.grid_search(todo)}, len(todo)
    if remaining > 0:
        storage_path, storage_fs = tune_filesystem(cfg.tune_storage)
        tune.Tuner(
            _trainable(spec, cfg),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode=MODE,
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=remaining if spec.stage == "search" else 1,
                reuse_actors=True,
                max_concurrent_trials=cfg.ray.max_concurrent_trials or None,
            ),
            run_config=tune.RunConfig(
                name=f"{spec.study_id}/{spec.stage}/attempt-{attempt}",
                storage_path=storage_path,
                storage_filesystem=storage_fs,
                callbacks=[tracker_cb],
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=cfg.ray.max_failures),
            ),
        ).fit()
        done += _finished_attempts(base, spec)[0][len(done) :]
    return pl.DataFrame(done, infer_schema_length=None)


def top_configs(search: pl.DataFrame, k: int, epochs: int) -> list[dict[str, Any]]:
    """The k best finished configurations by last validation score (pruned trials ranked too)."""
    if METRIC not in search.columns:
        return []
    ok = search.filter((pl.col("status") == "ok") & pl.col(METRIC).is_not_null())
    if ok.is_empty():
        return []
    params = [c for c in ok.columns if c.startswith("param.")]
    ok = ok.filter(pl.col(METRIC).is_not_nan())
    best = ok.sort(
        [pl.col("epochs") == epochs, METRIC, "trial_id"],
        descending=[True, True, False],
        maintain_order=True,
    ).head(k)
    return [
        {c.removeprefix("param."): row[c] for c in params if row[c] is not None}
        for row in best.iter_rows(named=True)
    ]


def run_study(cfg: SweepConfig, study: Study, extracted: Extracted) -> StudyOutcome:
    """Search, final seeds, selection (runs inside a Ray task; writes no files)."""
    tracker = TrackerClient()
    tags = {
        "study_id": study.study_id,
        "backbone": study.backbone,
        "encoder": study.encoder.name,
        "weights_id": extracted.weights_id,
        "dataset": study.dataset.name,
        "dataset_version": extracted.dataset_version,
        "probe": study.probe.name,
        "metric": extracted.metric,
        **provenance_tags(),
    }
    parent = tracker.study_run(study.study_id, tags)
    base = {
        "study_id": study.study_id,
        "probe": study.probe.name,
        "probe_hparams": study.probe.hparams,
        "task": extracted.task,
        "num_classes": extracted.num_classes,
        "store_url": cfg.store_url,
        "keys": extracted.keys,
        "epochs": cfg.train.epochs,
        "batch_size": cfg.train.batch_size,
        "warmup_epochs": cfg.train.warmup_epochs,
        "device": cfg.train.device,
    }
    space = load_space(study.probe.search, study.probe.name)
    search_spec = TrialSpec(stage="search", **base)
    search = _run_stage(
        cfg,
        search_spec,
        TrialTracker(study.study_id, tags, "search", search_spec),
        space=space,
        scheduler=make_scheduler(
            cfg.train.epochs, cfg.search.grace_epochs, cfg.search.reduction_factor
        ),
        num_samples=cfg.search.trials,
    )
    configs = top_configs(search, cfg.search.top_k, cfg.train.epochs)
    if not configs:
        tracker.study_finished(
            study.study_id, "FAILED", tags={"error": "every search trial failed"}
        )
        return StudyOutcome(
            search, pl.DataFrame(), f"every search trial failed (MLflow run {parent})"
        )
    cells = tuple((index, seed) for index in range(len(configs)) for seed in cfg.seeds)
    final_spec = TrialSpec(stage="final", configs=tuple(configs), cells=cells, **base)
    final = _run_stage(
        cfg,
        final_spec,
        TrialTracker(study.study_id, tags, "final", final_spec),
    )
    trials = pl.concat([search, final], how="diagonal_relaxed")
    rows = select_final(final, configs, study, extracted, len(cfg.seeds))
    if rows.is_empty():
        failed = final.filter(pl.col("status") != "ok").height if not final.is_empty() else 0
        tracker.study_finished(
            study.study_id, "FAILED", tags={"error": f"{failed} final trials failed"}
        )
        return StudyOutcome(
            trials,
            rows,
            f"no top-{len(configs)} configuration finished all {len(cfg.seeds)} seeds "
            f"({failed} final trials failed; MLflow run {parent}); re-run to retry them",
        )
    chosen = int(rows["config_index"][0])
    best = configs[chosen]
    tracker.study_finished(  # the report reads only the selected final runs
        study.study_id,
        "FINISHED",
        params={f"best.{k}": v for k, v in best.items()},
        metrics={
            "test_score_mean": rows["score"].mean(),
            "test_score_sd": rows["score"].std() or 0.0,
            "val_score_mean": rows["val_score"].mean(),
            "n_seeds": rows.height,
        },
        selected=[final_key(study.study_id, chosen, int(seed)) for seed in rows["seed"]],
    )
    return StudyOutcome(trials, rows, "")


def select_final(
    final: pl.DataFrame,
    configs: list[dict[str, Any]],
    study: Study,
    extracted: Extracted,
    n_seeds: int,
) -> pl.DataFrame:
    """Keep the seeds of the top-k config with the best mean validation score.

    Only configurations with a finite score for every seed compete: a win matrix built on
    fewer seeds would understate the standard deviation.
    """
    if "test_score" not in final.columns:
        return pl.DataFrame()
    ok = final.filter(
        (pl.col("status") == "ok")
        & pl.col("test_score").is_not_null()
        & pl.col("test_score").is_not_nan()
        & pl.col("val_score").is_not_nan()
    )
    means = (
        ok.group_by("config_index")
        .agg(pl.col("val_score").mean().alias("m"), pl.col("seed").n_unique().alias("n"))
        .filter(pl.col("n") == n_seeds)
        .sort(["m", "config_index"], descending=[True, False])
    )
    if means.is_empty():
        return pl.DataFrame()
    chosen = int(means["config_index"][0])
    picked = ok.filter(pl.col("config_index") == chosen).sort("seed")
    train_kw, probe_kw = split_params(configs[chosen])
    return pl.DataFrame(
        [
            {
                "backbone": study.backbone,
                "encoder": study.encoder.name,
                "weights_id": extracted.weights_id,
                "dataset": study.dataset.name,
                "dataset_version": extracted.dataset_version,
                "probe": study.probe.name,
                "seed": int(row["seed"]),
                "score": float(row["test_score"]),
                "metric": extracted.metric,
                "val_score": float(row["val_score"]),
                "config_index": chosen,
                "lr": float(train_kw.get("lr", float("nan"))),
                "weight_decay": float(train_kw.get("weight_decay", float("nan"))),
                "probe_hparams": repr({**study.probe.hparams, **probe_kw}),
                "study_id": study.study_id,
                "device": row.get("device", ""),
                **provenance_tags(),
            }
            for row in picked.iter_rows(named=True)
        ]
    )
