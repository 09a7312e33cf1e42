"""The driver: extraction jobs as Ray tasks, then every study in one Ray Tune run.

Extraction runs one task per (encoder, dataset) (``orchestrator.extract_jobs``). The studies share one Tune experiment driven
from this process (``orchestrator.schedule`` decides what runs, ``orchestrator.schedule_tune``
adapts it to Tune): no process per study, so the head stays small whatever the number of
studies. Only the driver writes the output folder: ``studies/<id>/trials.parquet`` (the ledger:
one row per finished trial, rewritten atomically as each finishes), ``studies/<id>/probes/``
(the final trials' trained probes) and, when a study finished, ``studies/<id>/final.parquet``,
which a re-run reads instead of redoing the study. A re-run replays the ledgers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl
import ray

from orchestrator.config import SweepConfig
from orchestrator.nodecheck import missing_on_node
from orchestrator.paths import tune_filesystem
from orchestrator.plan import Study, study_precision
from orchestrator.recorder import Recorder
from orchestrator.schedule import ScheduleSettings, StudyState
from orchestrator.study import Extracted, select_final, study_tags
from orchestrator.studybook import StudyBook
from orchestrator.trial import MISSING_ON_NODE, TrialSpec, probe_file, tune_trainable

log = logging.getLogger(__name__)

MAX_RECOMPUTES = 2  # a pair's entries recomputed this often and still corrupt: the disk is bad


def _atomic_parquet(frame: pl.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def _write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    _atomic_parquet(pl.DataFrame(rows, infer_schema_length=None), path)


def schedule_settings(cfg: SweepConfig) -> ScheduleSettings:
    return ScheduleSettings(
        trials=cfg.search.trials,
        startup_trials=cfg.search.startup_trials,
        batch_size=cfg.search.batch_size,
        grace_epochs=cfg.search.grace_epochs,
        reduction_factor=cfg.search.reduction_factor,
        epochs=cfg.train.epochs,
        top_k=cfg.search.top_k,
        seeds=tuple(cfg.seeds),
        reproducible=cfg.search.reproducible,
    )


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """The finished trials a study's ledger records (empty when there is none)."""
    if not path.exists():
        return []
    frame = pl.read_parquet(path)
    if "key" not in frame.columns:
        log.warning("%s predates the trial ledger format; its trials are not reused", path)
        return []
    return frame.to_dicts()


def run_studies(
    cfg: SweepConfig,
    studies: tuple[Study, ...],
    extracted: dict[tuple[str, str], Extracted | str],
    tracker=None,
) -> Iterator[tuple[Study, pl.DataFrame, str]]:
    """Yield ``(study, rows, error)`` for every study, in plan order; finished ones are read."""
    outcomes: dict[str, tuple[pl.DataFrame, str]] = {}
    todo = []
    for study in studies:
        done = cfg.out_dir / "studies" / study.study_id / "final.parquet"
        tokens = extracted[(study.backbone, study.dataset.name)]
        if isinstance(tokens, str):
            outcomes[study.study_id] = (pl.DataFrame(), tokens)
        elif done.exists():
            log.info("study %s already finished; skipping", study.study_id)
            outcomes[study.study_id] = (pl.read_parquet(done), "")
        else:
            todo.append(study)
    if todo:
        outcomes.update(_StudiesRun(cfg, todo, extracted, tracker).run())
    for study in studies:
        yield study, *outcomes[study.study_id]


def default_slots(cfg: SweepConfig) -> int:
    """Trials at once when the sweep does not say: as many as the cluster's resources fit."""
    resources = ray.cluster_resources()
    slots = []
    if cfg.ray.cpus_per_trial > 0:
        slots.append(int(resources.get("CPU", 1) // cfg.ray.cpus_per_trial))
    if cfg.ray.gpus_per_trial > 0:
        slots.append(int(resources.get("GPU", 0) // cfg.ray.gpus_per_trial))
    return max(1, min(slots) if slots else int(resources.get("CPU", 1)))


class _StudiesRun:
    """One Tune run over ``studies``; returns each study's outcome."""

    def __init__(self, cfg, studies, extracted, tracker) -> None:
        from orchestrator.search import load_space, optuna_space

        self.cfg = cfg
        self.tracker = tracker
        self.by_id = {s.study_id: s for s in studies}
        self.extracted = {s.study_id: extracted[(s.backbone, s.dataset.name)] for s in studies}
        self.settings = schedule_settings(cfg)
        spaces: dict[str, Any] = {}  # by search space; a study's probe has its overrides applied
        for s in studies:
            if s.probe.search not in spaces:
                spaces[s.probe.search] = optuna_space(load_space(s.probe.search, s.probe.name))
        self.spaces = {s.study_id: spaces[s.probe.search] for s in studies}
        self.probe_root = f"{cfg.tune_storage.rstrip('/')}/probes"
        self.specs = {s.study_id: self._spec(s) for s in studies}
        self.outcomes: dict[str, tuple[pl.DataFrame, str]] = {}
        self.tags = {s.study_id: study_tags(s, self.extracted[s.study_id]) for s in studies}
        self.pair_of = {s.study_id: (s.backbone, s.dataset.name) for s in studies}
        self.lost: set[tuple[str, str]] = set()  # pairs whose store entries a trial lost
        self.recomputed: dict[tuple[str, str], int] = {}
        self.missing_on: dict[tuple[str, str], str] = {}  # pair -> node that could not see it
        self.book: StudyBook | None = None
        self.recorder = Recorder()

    def _spec(self, study: Study) -> TrialSpec:
        cfg, extracted = self.cfg, self.extracted[study.study_id]
        return TrialSpec(
            study_id=study.study_id,
            stage="search",
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
            precision=study_precision(cfg),
            placement=cfg.train.placement,
            probe_dir=f"{self.probe_root}/{study.study_id}",
            meta={
                "backbone": study.backbone,
                "encoder": study.encoder.name,
                "checkpoint": study.encoder.checkpoint,
                "overrides": dict(study.encoder.overrides),
                "weights_id": extracted.weights_id,
                "dataset": study.dataset.name,
                "dataset_version": extracted.dataset_version,
                "probe": study.probe.name,
            },
        )

    def folder(self, study_id: str) -> Path:
        return self.cfg.out_dir / "studies" / study_id

    def open_study(self, study_id: str) -> StudyState:
        ledger = read_ledger(self.folder(study_id) / "trials.parquet")
        state = StudyState(study_id, self.spaces[study_id], self.settings, ledger)
        if ledger:
            log.info("study %s: %d finished trials replayed from its ledger", study_id, len(ledger))
        if self.tracker is not None:
            self.recorder.submit(
                self.tracker.study_run, study_id, self.tags[study_id], self._dataset(study_id)
            )
        return state

    def _dataset(self, study_id: str) -> dict[str, Any]:
        """The study's dataset as an MLflow input: name, version, store digests, split sizes."""
        study, extracted = self.by_id[study_id], self.extracted[study_id]
        splits = {}
        for split, key in sorted(extracted.keys.items()):
            size = study.dataset.options.get(f"{split}_clips")
            splits[split] = {"digest": getattr(key, "digest", str(key))[:16], "clips": size}
        digest = hashlib.sha256(json.dumps(splits, sort_keys=True).encode()).hexdigest()
        return {
            "name": study.dataset.name,
            "source": study.dataset.source or study.dataset.name,
            "version": extracted.dataset_version,
            "digest": digest[:16],
            "task": extracted.task,
            "num_classes": extracted.num_classes,
            "splits": splits,
        }

    def write_ledger(self, study: StudyState) -> None:
        """Queue the rewrite of the study's ledger (rows taken now, written in order)."""
        rows = study.rows()
        if rows:
            self.recorder.submit(_write_rows, rows, self.folder(study.study_id) / "trials.parquet")

    def collect_probe(self, config: dict[str, Any]) -> None:
        """Copy a finished final trial's probe from the Tune storage to the output folder."""
        if config.get("stage") != "final":
            return
        name = probe_file(int(config["config_index"]), int(config["seed"]))
        source = f"{self.probe_root}/{config['study']}/{name}"
        target = self.folder(config["study"]) / "probes" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if "://" in source:
                import fsspec

                with fsspec.open(source, "rb") as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            elif Path(source).resolve() != target.resolve():
                shutil.copyfile(source, target)
        except OSError as err:
            log.warning(
                "trial %s: its trained probe could not be collected: %s", config["key"], err
            )

    def on_trial_finished(self, study: StudyState, row: dict[str, Any]) -> None:
        if not study.done:  # a finished study's ledger was written when it closed
            self.write_ledger(study)

    def on_lost(self, study: StudyState, error: str) -> None:
        """A trial found a store entry of its study's pair corrupt (the store set it aside):
        hold every study of that pair until the entry is recomputed."""
        pair = self.pair_of[study.study_id]
        if MISSING_ON_NODE in error:  # not corruption: that node does not see the store
            self.missing_on[pair] = error.split(MISSING_ON_NODE, 1)[1].split()[0]
        if pair not in self.lost:
            log.warning(
                "store entries of %s / %s failed their checksums in a trial; their studies "
                "pause, the entries are recomputed once the running trials end, and only the "
                "trials that could not read them rerun",
                *pair,
            )
        self.lost.add(pair)
        assert self.book is not None
        for study_id in list(self.book.active):
            if self.pair_of[study_id] == pair:
                self.book.hold(study_id)

    def _driver_sees(self, pair: tuple[str, str]) -> bool:
        """Whether the driver finds every store entry of ``pair`` complete."""
        from orchestrator.store import EmbeddingStore

        store = EmbeddingStore(self.cfg.store_url)
        sid = next(s for s, p in self.pair_of.items() if p == pair)
        return all(store.complete(key) for key in self.specs[sid].keys.values())

    def recompute_lost(self) -> None:
        """Extract the lost pairs again, then release their held studies (or fail them)."""
        from orchestrator.extract_jobs import run_extractions

        assert self.book is not None
        pairs, self.lost = set(self.lost), set()
        for pair in [p for p in pairs if p in self.missing_on and self._driver_sees(p)]:
            pairs.discard(pair)  # recomputing cannot help a node that does not see the store
            self.book.release(
                [sid for sid in self.book.held if self.pair_of[sid] == pair],
                error=missing_on_node(pair, self.missing_on[pair], self.cfg),
            )
        again = {p for p in pairs if self.recomputed.get(p, 0) < MAX_RECOMPUTES}
        for pair in pairs - again:
            corrupt = (
                f"the store entries of {pair[0]} / {pair[1]} failed their checksums again "
                f"after {MAX_RECOMPUTES} recomputes: the store's disk or bucket corrupts "
                f"what is written to it ({self.cfg.store_url}); fix it and re-run"
            )
            self.book.release(
                [sid for sid in self.book.held if self.pair_of[sid] == pair],
                error=missing_on_node(pair, self.missing_on[pair], self.cfg)
                if pair in self.missing_on
                else corrupt,
            )
        redone = run_extractions(self.cfg, pairs=again) if again else {}
        for pair, result in redone.items():
            self.recomputed[pair] = self.recomputed.get(pair, 0) + 1
            held = [sid for sid in self.book.held if self.pair_of[sid] == pair]
            if isinstance(result, str):
                self.book.release(held, error=result)
                continue
            log.info("recomputed %s / %s; %d studies resume", *pair, len(held))
            for sid in self.pair_of:
                if self.pair_of[sid] == pair:
                    self.extracted[sid] = result
                    self.specs[sid] = replace(self.specs[sid], keys=result.keys)
            self.book.release(held)
        self.book.release()  # none should be left; never leave a study held

    def on_study_done(self, state: StudyState) -> None:
        self.write_ledger(state)
        study, extracted = self.by_id[state.study_id], self.extracted[state.study_id]
        error = state.error
        rows = pl.DataFrame()
        if not error:
            final = pl.DataFrame(
                [r for r in state.rows() if r["stage"] == "final"], infer_schema_length=None
            )
            rows = select_final(final, state.configs, study, extracted, len(self.cfg.seeds))
            if rows.is_empty():
                failed = sum(1 for r in state.final.values() if r.status == "error")
                error = (
                    f"no top-{len(state.configs)} configuration finished all "
                    f"{len(self.cfg.seeds)} seeds ({failed} final trials failed); re-run to "
                    "retry them"
                )
        if error:
            log.error("study %s failed: %s", state.study_id, error)
            self.outcomes[state.study_id] = (pl.DataFrame(), error)
            if self.tracker is not None:
                self.recorder.submit(
                    self.tracker.study_finished, state.study_id, "FAILED", params={"error": error}
                )
            return
        # MLflow first (selected runs tagged), the finished marker last: a kill in between
        # re-runs the study's selection on resume instead of leaving MLflow without it
        chosen = int(rows["config_index"][0])
        if self.tracker is not None:
            self.recorder.submit(
                self._study_to_mlflow,
                state.study_id,
                [probe_file(chosen, int(seed)) for seed in rows["seed"]],
                params={f"best.{k}": v for k, v in state.configs[chosen].items()},
                metrics={
                    "test_score_mean": rows["score"].mean(),
                    "test_score_sd": rows["score"].std() or 0.0,
                    "val_score_mean": rows["val_score"].mean(),
                },
                selected=[
                    r.item.key for r in state.final.values() if r.item.config_index == chosen
                ],
                chosen_config=state.configs[chosen],
            )
        self.recorder.submit(_atomic_parquet, rows, self.folder(state.study_id) / "final.parquet")
        self.outcomes[state.study_id] = (rows, "")

    def _study_to_mlflow(self, study_id: str, probes: list[str], **summary) -> None:
        """(Recorder thread) the selected configuration's trained probes as artifacts of the
        study run, its selected trial runs tagged, the study run closed."""
        files = [self.folder(study_id) / "probes" / name for name in probes]
        files = [f for f in files if f.exists()]
        if files:
            run_id = self.tracker.study_run(study_id, self.tags[study_id])
            self.tracker.log_artifacts(run_id, files, "probes")
            self.tracker.log_probe_model(study_id, files[0])  # the UI's Models column
        self.tracker.study_finished(study_id, "FINISHED", **summary)
        self.tracker.flush()

    def run(self) -> dict[str, tuple[pl.DataFrame, str]]:
        import optuna

        from orchestrator.packing import Packing
        from orchestrator.schedule_tune import ScheduleCallback

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # a line per study otherwise
        cfg = self.cfg
        book = StudyBook(
            list(self.by_id), self.open_study, self.on_study_done, cfg.ray.max_concurrent_studies
        )
        self.book = book
        book.blocked = lambda study_id: self.pair_of[study_id] in self.lost
        slots = cfg.ray.max_concurrent_trials or default_slots(cfg)
        # trials of one kind (same pair and probe) cost alike: packs are sized by kind
        packing = Packing(
            cfg.ray.pack_seconds,
            slots,
            cost_key=lambda sid: (*self.pair_of[sid], self.by_id[sid].probe.name),
            data_key=lambda sid: self.pair_of[sid],
        )
        callback = ScheduleCallback(
            book,
            self.on_trial_finished,
            self.tracker,
            lambda sid: {k: v for k, v in self.tags[sid].items() if k != "kind"},
            progress_seconds=float(os.environ.get("UNMUTE_PROGRESS_S", "30")),
            packing=packing,
        )
        callback.collect = self.collect_probe
        callback.record = self.recorder.submit
        callback.on_lost = self.on_lost
        # Tune's own experiment state is never read back (the ledgers are): write it rarely,
        # and no per-trial result files.
        os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "600")
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        resources = {"cpu": cfg.ray.cpus_per_trial, "gpu": cfg.ray.gpus_per_trial}
        log.info(
            "tuning %d studies in one Tune run, %d trials at a time (%s mode)",
            len(self.by_id),
            slots,
            "reproducible" if cfg.search.reproducible else "async",
        )
        started = time.monotonic()
        # Tune's closing summary would read a result file per trial; we keep none (see above)
        logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
        try:
            self._tune_runs(book, callback, slots, resources)
        finally:
            self.recorder.close()  # every queued write lands, even when the run failed
        callback.log_progress()
        self.split_loads = callback.split_loads()
        log.info("Tune run finished in %.0f s", time.monotonic() - started)
        if self.tracker is not None:
            self.tracker.flush()
        for study_id in self.by_id:  # a study the run left unfinished (should not happen)
            self.outcomes.setdefault(study_id, (pl.DataFrame(), "the Tune run ended before it"))
        return self.outcomes

    def _tune_runs(self, book: StudyBook, callback, slots: int, resources: dict) -> None:
        """Tune runs over the book until every study is done (a new run every
        ``UNMUTE_TRIALS_PER_TUNE_RUN`` Tune trials (packs), and after recomputing lost store
        entries)."""
        from ray import tune

        from orchestrator.schedule_tune import BookSearcher, RungScheduler
        from orchestrator.search import METRIC, MODE

        cfg = self.cfg
        budget = int(os.environ.get("UNMUTE_TRIALS_PER_TUNE_RUN", "5000"))
        storage_path, storage_fs = tune_filesystem(cfg.tune_storage)  # s3:// through fsspec
        while True:  # Tune keeps every trial of a run in memory: a new run every `budget`
            searcher = BookSearcher(book, METRIC, MODE, budget=budget, packing=callback.packing)
            trainable = tune.with_resources(
                tune.with_parameters(tune_trainable, specs=self.specs), resources
            )
            tune.Tuner(
                trainable,
                tune_config=tune.TuneConfig(
                    metric=METRIC,
                    mode=MODE,
                    search_alg=searcher,
                    scheduler=RungScheduler(callback),
                    num_samples=-1,
                    reuse_actors=True,
                    max_concurrent_trials=slots,
                    trial_dirname_creator=lambda trial: trial.trial_id,
                ),
                run_config=tune.RunConfig(
                    name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
                    storage_path=storage_path,
                    storage_filesystem=storage_fs,
                    callbacks=[callback],
                    verbose=0,
                    failure_config=tune.FailureConfig(max_failures=cfg.ray.max_failures),
                ),
            ).fit()
            searcher.give_back()
            if book.held and (searcher.exhausted or searcher.handed_out == 0):
                self.recompute_lost()  # then another Tune run reruns the held studies' trials
            elif searcher.exhausted or searcher.handed_out == 0:
                break
            time.sleep(1)  # run names carry the second
