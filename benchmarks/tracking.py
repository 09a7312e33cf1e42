"""MLflow logging cost per study against a real ``mlflow server`` (sqlite backend, 1 worker).

Simulates studies of N trials x E epochs (3 metrics per epoch, 2 searched hyperparameters,
the final stage's seeds) logged (a) through SweepTracker (batched) and (b) the naive way,
one ``log_param``/``log_metric`` request per value, as a per-result Tune callback would.
Prints HTTP requests and wall seconds per study, and the requests a paper-scale sweep costs.

    PYTHONPATH=$PWD python3 benchmarks/tracking.py [--trials 8 32] [--epochs 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlflow.tracking import MlflowClient

from orchestrator.tracking import SweepTracker
from tests.orchestrator.mlflow_server import count_requests, mlflow_server

SEEDS = 3
TAGS = {"backbone": "eat", "dataset": "synth_events", "probe": "linear"}


DATASET = {"name": "synth_events", "version": "1", "digest": "0" * 16, "splits": {}}


def batched(t: SweepTracker, study: str, trials: int, epochs: int) -> None:
    t.study_run(study, TAGS, DATASET)  # final runs log it as their input (one request each)
    keys = []
    for n in range(trials):
        stage = "final" if n >= trials - SEEDS else "search"
        key = f"{study}/{stage}/{n}"
        t.trial_started(study, key, stage, {"lr": 1e-3 / (n + 1), "weight_decay": 0.01}, TAGS)
        for epoch in range(1, epochs + 1):
            t.trial_result(key, {"val_score": epoch, "train_loss": 1 / epoch, "val_map": 1}, epoch)
        t.trial_finished(key, "FINISHED")
        keys += [key] if stage == "final" else []
    t.study_finished(study, "FINISHED", metrics={"test_score_mean": 1.0}, selected=keys)


def naive(client: MlflowClient, study: str, trials: int, epochs: int) -> None:
    exp = client.get_experiment_by_name("bench-naive") or client.get_experiment(
        client.create_experiment("bench-naive")
    )
    parent = client.create_run(exp.experiment_id, tags={**TAGS, "study_id": study})
    for n in range(trials):
        run = client.create_run(
            exp.experiment_id, tags={**TAGS, "mlflow.parentRunId": parent.info.run_id}
        )
        rid = run.info.run_id
        for key, value in {"lr": 1e-3 / (n + 1), "weight_decay": 0.01, "epochs": epochs}.items():
            client.log_param(rid, key, value)
        for epoch in range(1, epochs + 1):
            for key, value in {"val_score": epoch, "train_loss": 1 / epoch, "val_map": 1}.items():
                client.log_metric(rid, key, value, step=epoch)
        client.set_terminated(rid)
    client.set_terminated(parent.info.run_id)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, mlflow_server(Path(tmp)) as url:
        tracker = SweepTracker(  # once per sweep (not counted): experiment, sweep run, config
            url, "bench", sweep_id="bench", sweep_name="bench", out_dir="/bench",
            config={"train": {"epochs": args.epochs, "batch_size": 8}}, flush_seconds=3600,
        )  # fmt: skip
        client = MlflowClient(url)
        for trials in args.trials:
            for name, fn, via in (
                ("SweepTracker (batched)", batched, tracker),
                ("naive per value", naive, client),
            ):
                with count_requests() as calls:
                    start = time.perf_counter()
                    fn(via, f"s{trials}-{name[:5]}", trials, args.epochs)
                    seconds = time.perf_counter() - start
                rows.append((name, trials, sum(calls.values()), seconds))
    print(
        f"\nMLflow logging per study ({args.epochs} epochs x 3 metrics per trial, {SEEDS} "
        "final seeds selected; real server, sqlite, 1 worker; sweep setup not counted)"
    )
    print(f"| {'logging':24s} | trials | HTTP requests | per trial | wall s |")
    print(f"|{'-' * 26}|-------:|--------------:|----------:|-------:|")
    for name, trials, requests, seconds in rows:
        print(
            f"| {name:24s} | {trials:6d} | {requests:13d} | {requests / trials:9.2f} | {seconds:6.1f} |"
        )
    studies, search, final, seeds = 1386, 69_300, 20_790, 5
    sweep = 3 * (search + final) + studies * (4 + seeds)
    print(
        f"\npaper scale ({studies} studies, {search + final:,} trial runs): SweepTracker "
        f"~{sweep:,} requests (3 per trial + {4 + seeds} per study), whatever the epochs"
    )


if __name__ == "__main__":
    main()
