"""Orchestration overhead: N tiny probe trainings through Ray Tune vs a plain Python loop.

The same function (a linear probe fitted with ``probes.fit`` on small in-memory token maps,
reporting once per epoch) runs N times in a loop and N times as Ray Tune trials with
``reuse_actors=True`` (as the sweep runs them) and without. Prints per-trial overhead and the
ratio. Usage: ``python benchmarks/overhead.py [--trials 40] [--epochs 3] [--cpus 2]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

# benchmarks/probes.py would shadow the probes package (here and in Ray workers, which inherit
# the driver's sys.path): drop this folder from the path and put the repository first.
HERE = Path(__file__).resolve().parent


def _repository_first() -> None:
    sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]


_repository_first()


def make_data(n: int = 64, tokens: int = 32, dim: int = 32, classes: int = 5):
    from probes import ProbeData

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, tokens, dim)).astype(np.float16)
    y = (rng.random((n, classes)) < 0.3).astype(np.float32)
    return ProbeData(tokens=x, labels=y, task="multilabel")


def train_once(config: dict, report=None) -> float:
    _repository_first()  # also in Ray workers
    import torch

    from probes import TrainConfig, create_probe, fit

    torch.set_num_threads(1)
    data = make_data()
    probe = create_probe("linear", embed_dim=32, num_classes=5)
    cfg = TrainConfig(lr=config["lr"], epochs=config["epochs"], batch_size=32, seed=0)
    fit(probe, data, data, cfg, on_epoch=report)
    return 0.0


def tune_trial(config: dict) -> None:
    from ray import tune

    train_once(
        config, report=lambda epoch, metrics: tune.report({"val_score": metrics["val_score"]})
    )


def run_tune(n: int, epochs: int, reuse: bool, cpus: int) -> float:
    import ray
    from ray import tune

    start = time.monotonic()
    tuner = tune.Tuner(
        tune.with_resources(tune_trial, {"cpu": 1}),
        param_space={"lr": tune.grid_search([1e-3] * n), "epochs": epochs},
        tune_config=tune.TuneConfig(reuse_actors=reuse, max_concurrent_trials=cpus),
        run_config=tune.RunConfig(storage_path=os.path.abspath("/tmp/overhead-bench"), verbose=0),
    )
    grid = tuner.fit()
    assert not grid.errors, grid.errors
    del ray
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    start = time.monotonic()
    for _ in range(args.trials):
        train_once({"lr": 1e-3, "epochs": args.epochs})
    plain = time.monotonic() - start

    start = time.monotonic()
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    ray_start = time.monotonic() - start
    reuse = run_tune(args.trials, args.epochs, True, args.cpus)
    fresh = run_tune(args.trials, args.epochs, False, args.cpus)
    ray.shutdown()
    n = args.trials
    print(f"{n} trials x {args.epochs} epochs, {args.cpus} CPUs (Ray start: {ray_start:.1f} s)")
    # Tune runs `cpus` trials at once: its cost in slot-seconds is wall time x slots.
    header = ("runner", "wall s", "slots", "slot-s/trial", "overhead slot-s/trial", "slot ratio")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("-" * (len(h) + 2) for h in header) + "|")
    rows = (
        ("plain loop (1 process)", plain, 1),
        ("Ray Tune, reuse_actors=True", reuse, args.cpus),
        ("Ray Tune, new actor per trial", fresh, args.cpus),
    )
    for label, total, slots in rows:
        slot_s = total * slots
        print(
            f"| {label} | {total:.1f} | {slots} | {slot_s / n:.3f} | "
            f"{(slot_s - plain) / n:.3f} | {slot_s / plain:.2f} |"
        )


if __name__ == "__main__":
    main()
