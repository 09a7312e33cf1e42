"""Scale of the head: sweeps of 1, 16, 64, 256 studies of tiny trials through the real driver
(``orchestrator.runner.run_studies``: one Tune run, the schedule, the ledgers, the recorder
thread, MLflow on a local sqlite store or off), against a plain loop of the same trials
(``probes.fit`` on the same store) measured in the same run. Prints one table.

Columns: wall (the Tune run, study setup included), startup (driver start to the first trial's
start: Tune's setup, the trial actors' imports), trials, overhead per trial
(``(wall x slots - loop time) / trials``), slot busy % (time slots held a trial / wall x
slots) and the same from the first trial's start to the last trial's end, peak head memory
(PSS summed over the driver's process tree: the driver, Ray's GCS, raylet and workers),
orchestration CPU (driver + Ray system processes, not trial workers, as % of one core over the
run) and the plain loop's time.

Usage: ``python benchmarks/scale.py [--studies 1 16 64 256] [--slots 2]
[--mlflow sqlite|off|both]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _repository_first() -> None:
    # benchmarks/probes.py would shadow the probes package (here and in Ray workers)
    sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]


_repository_first()

CLIPS = {"train_clips": 24, "valid_clips": 12, "test_clips": 12, "clip_seconds": 2.0}
OVERRIDES = [
    "encoder=[eat]",
    "dataset=[synth_events]",
    "probe=[linear]",
    "search.trials=4",
    "search.startup_trials=2",
    "search.batch_size=2",
    "search.grace_epochs=1",
    "search.reduction_factor=2",
    "search.top_k=1",
    "final.seeds=[0]",
    "train.epochs=2",
    "train.batch_size=8",
    "ray.max_concurrent_studies=64",  # as full_benchmark
]


class TreeSampler(threading.Thread):
    """Peak summed PSS of this process's tree, and CPU seconds of its non-worker processes."""

    def __init__(self, every: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.every = every
        self.peak_pss = 0
        self.system_cpu: dict[int, float] = {}  # CPU seconds since first seen, by process
        self._cpu_at_start: dict[int, float] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        seen = True  # processes alive at the first sample started before the run
        while not self._halt.is_set():
            total = 0
            for proc in [me, *me.children(recursive=True)]:
                try:
                    total += proc.memory_full_info().pss
                    cmd = " ".join(proc.cmdline())
                    if "default_worker" not in cmd and "ray::" not in proc.name() + cmd:
                        times = proc.cpu_times()
                        used = times.user + times.system
                        # the driver (this process) and Ray's daemons existed before the run:
                        # count only what they use from the first sample on
                        first = self._cpu_at_start.setdefault(proc.pid, used if seen else 0.0)
                        self.system_cpu[proc.pid] = used - first
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    continue
            self.peak_pss = max(self.peak_pss, total)
            seen = False
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def make_store(root: Path):
    """synth_events (tiny) extracted by the tiny random eat; the Extracted summary."""
    from backbones import create_backbone
    from orchestrator.datasets import get_dataset
    from orchestrator.extract import extract_split
    from orchestrator.store import EmbeddingStore
    from orchestrator.study import Extracted

    spec = get_dataset("synth_events", **CLIPS)
    backbone = create_backbone("eat", checkpoint="random", size="tiny")
    store = EmbeddingStore(str(root / "store"))
    keys = {
        split: extract_split(backbone, spec, split, store, str(root / "data"), progress=False)
        for split in ("train", "valid", "test")
    }
    return Extracted(
        keys, backbone.weights_id, spec.version, spec.task, spec.metric, spec.num_classes, 0
    )


def plain_loop(cfg, extracted, ledgers: list[Path]) -> float:
    """The same trials (params, seed, epochs actually run) in one process, one thread."""
    import polars as pl
    import torch

    from orchestrator.store import EmbeddingStore
    from orchestrator.trial import split_params
    from probes import TrainConfig, create_probe, evaluate, fit

    torch.set_num_threads(1)
    store = EmbeddingStore(cfg.store_url)
    data = {
        s: store.load(extracted.keys[s]).to_probe_data(extracted.task)
        for s in ("train", "valid", "test")
    }
    rows = pl.concat([pl.read_parquet(p) for p in ledgers], how="diagonal_relaxed").to_dicts()
    start = time.perf_counter()
    for row in rows:
        params = {k[6:]: v for k, v in row.items() if k.startswith("param.") and v is not None}
        train_kw, probe_kw = split_params(params)
        torch.manual_seed(row["seed"])
        probe = create_probe(
            "linear",
            embed_dim=data["train"].embed_dim,
            num_classes=extracted.num_classes,
            **probe_kw,
        )
        fit(
            probe,
            data["train"],
            data["valid"],
            TrainConfig(
                epochs=int(row["epochs"]),
                batch_size=cfg.train.batch_size,
                seed=int(row["seed"]),
                **train_kw,
            ),
            on_epoch=lambda e, m: None,
        )
        if row["stage"] == "final":
            evaluate(probe, data["test"], batch_size=cfg.train.batch_size)
    return time.perf_counter() - start


def one(
    n_studies: int,
    slots: int,
    root: Path,
    extracted,
    mlflow: bool,
    epochs: int = 2,
    pack_seconds: float = 2.0,
) -> dict:
    import ray

    from orchestrator import packing, schedule_tune
    from orchestrator.config import load
    from orchestrator.plan import Study, make_plan
    from orchestrator.runner import run_studies
    from orchestrator.tracking import SweepTracker

    # one folder per row: MLflow caches its sqlite engine by URI, so a path is never reused
    out = root / f"out-{n_studies}-{'mlflow' if mlflow else 'none'}-pack{pack_seconds:g}"
    overrides = [
        *OVERRIDES,
        f"ray.max_concurrent_trials={slots}",
        f"train.epochs={epochs}",
        f"ray.pack_seconds={pack_seconds}",
    ]
    cfg = load("quickstart", overrides, out_dir=str(out))
    cfg = replace(cfg, store_url=str(root / "store"))
    base = make_plan(cfg).studies[0]
    studies = tuple(
        Study(base.encoder, base.dataset, base.probe, f"scale-{i}") for i in range(n_studies)
    )
    results = {(base.backbone, base.dataset.name): extracted}
    busy: dict[str, float] = {}  # Tune trial (a pack of trials) -> seconds it held its slot
    started: dict[str, float] = {}
    spans: list[tuple[float, float]] = []
    work: list[float] = []  # each trial's own seconds, measured by the worker
    sizes: list[int] = []
    orig_start = schedule_tune.ScheduleCallback.on_trial_start
    orig_end = schedule_tune.ScheduleCallback._end
    orig_observe = packing.Packing.observe

    def on_start(self, iteration, trials, trial, **info):
        started[trial.trial_id] = time.monotonic()
        return orig_start(self, iteration, trials, trial, **info)

    def end(self, trial):
        now = time.monotonic()
        busy[trial.trial_id] = now - started.get(trial.trial_id, now)
        spans.append((started.get(trial.trial_id, now), now))
        pack = orig_end(self, trial)
        sizes.append(len(pack.configs))
        return pack

    def observe(self, study_id, stage, seconds):
        work.append(seconds)
        return orig_observe(self, study_id, stage, seconds)

    schedule_tune.ScheduleCallback.on_trial_start = on_start
    schedule_tune.ScheduleCallback._end = end
    packing.Packing.observe = observe
    for attempt in range(3):  # Ray gives its raylet 30 s to start; a loaded machine needs more
        try:
            ray.init(
                address="local",
                num_cpus=slots,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
            break
        except Exception as err:
            if "timed out during startup" not in str(err) or attempt == 2:
                raise
            ray.shutdown()
    sampler = TreeSampler()
    sampler.start()
    tracker = None
    if mlflow:
        out.mkdir(parents=True, exist_ok=True)
        tracker = SweepTracker(
            f"sqlite:///{out / 'mlflow.db'}",
            "scale",
            sweep_id=f"s{n_studies}",
            sweep_name="scale",
            out_dir=str(out),
            config={},
        )
    start = time.monotonic()
    rows = list(run_studies(cfg, studies, results, tracker))
    wall = time.monotonic() - start
    sampler.stop()
    cpu = sum(sampler.system_cpu.values())
    ray.shutdown()
    schedule_tune.ScheduleCallback.on_trial_start = orig_start
    schedule_tune.ScheduleCallback._end = orig_end
    packing.Packing.observe = orig_observe
    failed = [sid for sid in rows if sid[2]]
    ledgers = sorted(out.glob("studies/*/trials.parquet"))
    loop = plain_loop(cfg, extracted, ledgers)
    n_trials = len(work)
    first = min((a for a, _ in spans), default=start)
    last = max((b for _, b in spans), default=start)
    return {
        "studies": n_studies,
        "MLflow": "sqlite" if mlflow else "off",
        "trials": n_trials,
        "failed studies": len(failed),
        "wall s": wall,
        "startup s": first - start,
        "overhead s/trial": (wall * slots - loop) / max(n_trials, 1),
        "slots busy %": 100 * sum(busy.values()) / (wall * slots),
        "busy after startup %": 100 * sum(busy.values()) / (max(last - first, 1e-9) * slots),
        "training after startup %": 100 * sum(work) / (max(last - first, 1e-9) * slots),
        "trials per Tune trial": n_trials / max(len(sizes), 1),
        "peak head PSS GB": sampler.peak_pss / 2**30,
        "orchestration CPU %": 100 * cpu / wall,
        "plain loop s": loop,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument(
        "--epochs", type=int, default=2, help="epochs per trial (2: tiny; more: longer trials)"
    )
    parser.add_argument("--root", default="/tmp/unmute-scale")
    parser.add_argument(
        "--mlflow",
        choices=("sqlite", "off", "both"),
        default="both",
        help="log every trial to a local sqlite MLflow store, not at all, or both (two rows)",
    )
    parser.add_argument(
        "--pack",
        choices=("on", "off", "both"),
        default="both",
        help="trials packed into Tune trials (ray.pack_seconds=2), one per Tune trial, or both",
    )
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("UNMUTE_PROGRESS_S", "60")
    import logging
    import shutil

    logging.basicConfig(level=logging.WARNING)
    root = Path(args.root)
    extracted = make_store(root)
    table = []
    variants = {"sqlite": [True], "off": [False], "both": [True, False]}[args.mlflow]
    packs = {"on": [2.0], "off": [0.0], "both": [0.0, 2.0]}[args.pack]
    for n in args.studies:
        for mlflow in variants:
            for pack in packs:
                shutil.rmtree(
                    root / f"out-{n}-{'mlflow' if mlflow else 'none'}-pack{pack:g}",
                    ignore_errors=True,
                )
                row = one(n, args.slots, root, extracted, mlflow, args.epochs, pack)
                table.append({"studies": n, "pack s": pack, **row})
                print(table[-1], flush=True)
    keys = list(table[0])
    print(
        f"\n{args.slots} slots, tiny trials (synth_events 24/12/12 clips, linear probe, "
        f"4 search + 1 final per study, {args.epochs} epochs); 'startup s': from the driver's start to "
        "the first trial's; 'busy after startup': from the first trial's start to the last "
        "trial's end"
    )
    print("| " + " | ".join(keys) + " |")
    print("|" + "|".join("---" for _ in keys) + "|")
    for row in table:
        print(
            "| "
            + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values())
            + " |"
        )


if __name__ == "__main__":
    main()
