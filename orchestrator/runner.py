"""The driver: extraction jobs as Ray tasks, then every study as two Ray Tune stages.

Stage "search" runs the Optuna search (Sobol then TPE) under ASHA; stage "final" reruns the top-k
configurations with every seed and scores the test split. Each stage is its own Tune experiment
under ``<storage>/<study_id>/<stage>`` so an interrupted sweep resumes with ``Tuner.restore``
(finished trials are never rerun), and a finished study leaves ``studies/<id>/final.parquet``
so a re-run skips it entirely. Results flow one way: trial reports -> study rows -> results table.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import ray
from ray import tune

from orchestrator.config import SweepConfig
from orchestrator.plan import Plan, Study, encoder_label
from orchestrator.provenance import git_sha, provenance_tags
from orchestrator.search import METRIC, MODE, load_space, make_scheduler, make_searcher
from orchestrator.tracking import Tracker, TrialTracker
from orchestrator.trial import TrialSpec, run_trial, split_params

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


def _extract_pair(encoder, dataset, cfg: SweepConfig) -> Extracted:
    """Ray task body: build the frozen encoder once, extract the three splits into the store."""
    import torch

    from backbones import create_backbone
    from orchestrator.datasets import get_dataset
    from orchestrator.extract import extract_split
    from orchestrator.store import EmbeddingStore

    device = cfg.extract_device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = get_dataset(dataset.name, source=dataset.source, **dataset.options)
    backbone = create_backbone(encoder.name, checkpoint=encoder.checkpoint, **encoder.overrides)
    backbone = backbone.to(device)
    store = EmbeddingStore(cfg.store_url)
    keys, skipped = {}, 0
    for split in ("train", "valid", "test"):
        keys[split] = extract_split(
            backbone,
            spec,
            split,
            store,
            data_root=cfg.data_root,
            batch_size=cfg.extract_batch_size,
            progress=False,
        )
        skipped += len(store.manifest(keys[split]).get("skipped", []))
    return Extracted(
        keys=keys,
        weights_id=backbone.weights_id,
        dataset_version=spec.version,
        task=spec.task,
        metric=spec.metric,
        num_classes=len(spec.classes),
        skipped=skipped,
    )


def run_extractions(cfg: SweepConfig, plan: Plan) -> dict[tuple[str, str], Extracted]:
    """One Ray task per (encoder, dataset); finished store entries are not recomputed."""
    task = ray.remote(_extract_pair).options(
        num_cpus=cfg.ray.cpus_per_extraction, num_gpus=cfg.ray.gpus_per_extraction, max_retries=1
    )
    pairs = {(j.encoder, j.dataset) for j in plan.extractions}
    refs = {
        (encoder_label(enc), ds.name): task.remote(enc, ds, cfg)
        for enc, ds in sorted(pairs, key=lambda p: (encoder_label(p[0]), p[1].name))
    }
    done: dict[tuple[str, str], Extracted] = {}
    for pair, ref in refs.items():
        done[pair] = ray.get(ref)
        log.info("extracted %s / %s (%d unreadable clips skipped)", *pair, done[pair].skipped)
    return done


def _stage_tuner(path: str, trainable, make: callable) -> tune.Tuner:
    if tune.Tuner.can_restore(path):
        log.info("resuming Tune experiment %s", path)
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False)
    return make()


def _trainable(spec: TrialSpec, cfg: SweepConfig):
    resources = {"cpu": cfg.ray.cpus_per_trial, "gpu": cfg.ray.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(run_trial, spec=spec), resources)


def _run_stage(
    cfg: SweepConfig,
    spec: TrialSpec,
    tracker_cb: TrialTracker,
    *,
    searcher=None,
    scheduler=None,
    param_space=None,
    num_samples: int = 1,
) -> pl.DataFrame:
    storage = cfg.tune_storage
    name = f"{spec.study_id}/{spec.stage}"
    trainable = _trainable(spec, cfg)

    def make() -> tune.Tuner:
        return tune.Tuner(
            trainable,
            param_space=param_space or {},
            tune_config=tune.TuneConfig(
                metric=METRIC,
                mode=MODE,
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=num_samples,
                reuse_actors=True,
                max_concurrent_trials=cfg.ray.max_concurrent_trials or None,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage,
                callbacks=[tracker_cb],
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=cfg.ray.max_failures),
            ),
        )

    grid = _stage_tuner(f"{storage.rstrip('/')}/{name}", trainable, make).fit()
    rows = []
    for result in grid:
        metrics = result.metrics or {}
        config = dict(result.config or {})
        rows.append(
            {
                "trial_id": metrics.get("trial_id", ""),
                "stage": spec.stage,
                "status": "error" if result.error else "ok",
                "error": str(result.error)[-2000:] if result.error else "",
                "epochs": int(metrics.get("epoch", 0) or 0),
                "config": repr(config),
                **{k: v for k, v in metrics.items() if k.startswith(("val_", "test_"))},
                "seed": int(config.get("seed", 0)),
                "config_index": int(config.get("config_index", -1)),
                **{f"param.{k}": v for k, v in config.items() if k not in ("seed", "config_index")},
            }
        )
    return pl.DataFrame(rows, infer_schema_length=None)


def top_configs(search: pl.DataFrame, k: int, epochs: int) -> list[dict[str, Any]]:
    """The k best finished configurations by last validation score (pruned trials ranked too)."""
    ok = search.filter((pl.col("status") == "ok") & pl.col(METRIC).is_not_null())
    if ok.is_empty():
        return []
    params = [c for c in ok.columns if c.startswith("param.")]
    best = ok.sort([pl.col("epochs") == epochs, METRIC], descending=True).head(k)
    return [
        {c.removeprefix("param."): row[c] for c in params if row[c] is not None}
        for row in best.iter_rows(named=True)
    ]


def _atomic_parquet(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def run_study(
    cfg: SweepConfig, study: Study, extracted: Extracted, tracker: Tracker
) -> pl.DataFrame:
    """Search, final seeds, selection; returns the study's result rows (one per seed)."""
    folder = cfg.out_dir / "studies" / study.study_id
    done = folder / "final.parquet"
    if done.exists():
        log.info("study %s already finished; skipping", study.study_id)
        return pl.read_parquet(done)
    tags = {
        "kind": "study",
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
    parent = tracker.ensure_run(study.study_id, tags, kind="study", study_id=study.study_id)
    base = dict(
        study_id=study.study_id,
        probe=study.probe.name,
        probe_hparams=study.probe.hparams,
        task=extracted.task,
        num_classes=extracted.num_classes,
        store_url=cfg.store_url,
        keys=extracted.keys,
        epochs=cfg.train.epochs,
        batch_size=cfg.train.batch_size,
        warmup_epochs=cfg.train.warmup_epochs,
        device=cfg.train.device,
    )
    child_tags = {k: v for k, v in tags.items() if k != "kind"} | {"kind": "trial"}
    space = load_space(study.probe.search, study.probe.name)
    search = _run_stage(
        cfg,
        TrialSpec(stage="search", **base),
        TrialTracker(
            tracker.tracking_uri, cfg.experiment, parent, child_tags, "search", cfg.train.epochs
        ),
        searcher=make_searcher(space, cfg.search.startup_trials),
        scheduler=make_scheduler(
            cfg.train.epochs, cfg.search.grace_epochs, cfg.search.reduction_factor
        ),
        num_samples=cfg.search.trials,
    )
    configs = top_configs(search, cfg.search.top_k, cfg.train.epochs)
    if not configs:
        tracker.log(parent, tags={"error": "every search trial failed"})
        tracker.finish(parent, "FAILED")
        log.error("study %s: every search trial failed; see MLflow run %s", study.study_id, parent)
        _atomic_parquet(search, folder / "trials.parquet")
        return pl.DataFrame()
    final = _run_stage(
        cfg,
        TrialSpec(stage="final", configs=tuple(configs), **base),
        TrialTracker(
            tracker.tracking_uri, cfg.experiment, parent, child_tags, "final", cfg.train.epochs
        ),
        param_space={
            "config_index": tune.grid_search(list(range(len(configs)))),
            "seed": tune.grid_search(list(cfg.seeds)),
        },
    )
    _atomic_parquet(pl.concat([search, final], how="diagonal_relaxed"), folder / "trials.parquet")
    rows = select_final(final, configs, study, extracted)
    if rows.is_empty():
        tracker.finish(parent, "FAILED")
        return rows
    best = configs[int(rows["config_index"][0])]
    tracker.log(
        parent,
        params={f"best.{k}": v for k, v in best.items()},
        metrics={
            "test_score_mean": rows["score"].mean(),
            "test_score_sd": rows["score"].std() or 0.0,
            "val_score_mean": rows["val_score"].mean(),
        },
        tags={"n_seeds": rows.height},
    )
    tracker.finish(parent, "FINISHED")
    _atomic_parquet(rows, done)
    return rows


def select_final(
    final: pl.DataFrame, configs: list[dict[str, Any]], study: Study, extracted: Extracted
) -> pl.DataFrame:
    """Keep the seeds of the top-k config with the best mean validation score."""
    ok = final.filter((pl.col("status") == "ok") & pl.col("test_score").is_not_null())
    if ok.is_empty():
        return pl.DataFrame()
    means = (
        ok.group_by("config_index")
        .agg(pl.col("val_score").mean().alias("m"))
        .sort("m", descending=True)
    )
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
                "git_sha": git_sha(),
            }
            for row in picked.iter_rows(named=True)
        ]
    )
