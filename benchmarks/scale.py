"""How the orchestration scales with the number of studies; prints a markdown table.

For each N in ``--studies``: a quickstart of N studies of tiny trials (tiny random encoders x the
two generated datasets x probes, few clips, few epochs) run as ``python -m orchestrator.sweep``
on a private local Ray, and measured from outside:

- wall time of the sweep and the trials' own time (``time_total_s`` of every trial in
  ``studies/*/trials.parquet``);
- end-to-end overhead per trial = (wall x slots - trial time) / trials (study setup included);
- slot busy fraction = trial time / (wall x slots);
- peak head memory: PSS summed over the sweep's process tree (driver, Ray's daemons and
  workers), sampled every second.

Not yet here: the plain-loop baseline of the same trials and the idle CPU of the head (the
issue's other two columns). Numbers on a shared machine vary: compare ratios, not seconds.

    python benchmarks/scale.py --studies 1 16 64 --trials 4 --epochs 2
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
ENCODERS = ("eat", "beats", "audiomae", "asit", "dasheng", "sslam", "eat_plus", "beats_plus",
            "sslam_plus")  # fmt: skip
DATASETS = ("synth_events", "synth_control")
PROBES = ("linear", "mlp", "linearc", "conv", "linpre", "mhca", "ep", "simpool", "abmilp",
          "proto", "protobin")  # fmt: skip


def study_grid(n: int) -> tuple[list[str], list[str], list[str]]:
    """The smallest encoder x dataset x probe grid with at least ``n`` studies."""
    for e, d, p in itertools.product(range(1, 10), range(1, 3), range(1, 12)):
        if e * d * p >= n:
            return list(ENCODERS[:e]), list(DATASETS[:d]), list(PROBES[:p])
    raise SystemExit(f"at most {9 * 2 * 11} studies: tiny encoders x generated datasets x probes")


def overrides(n: int, trials: int, epochs: int) -> list[str]:
    enc, ds, pr = study_grid(n)
    small = []
    for name in ds:
        for split, k in (("train", 16), ("valid", 8), ("test", 8)):
            small.append(f"dataset.{name}.options.{split}_clips={k}")
    return [
        f"encoder=[{','.join(enc)}]",
        f"dataset=[{','.join(ds)}]",
        f"probe=[{','.join(pr)}]",
        *small,
        f"search.trials={trials}",
        f"search.startup_trials={trials}",
        "search.grace_epochs=1",
        "search.top_k=1",
        f"train.epochs={epochs}",
        "train.batch_size=8",
        "final.seeds=[0]",
    ]


def tree_pss(root: psutil.Process) -> float:
    """PSS (bytes) summed over ``root`` and its descendants."""
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def run_sweep(n: int, trials: int, epochs: int, work: Path) -> dict[str, float]:
    env = {**os.environ, "UNMUTE_OUT_ROOT": str(work / "out"), "UNMUTE_STORE": str(work / "store"),
           "UNMUTE_DATA": str(work / "data"), "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "orchestrator.sweep", "quickstart", *overrides(n, trials, epochs)]
    started = time.monotonic()
    with open(work / "sweep.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=log)
    root = psutil.Process(proc.pid)
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            peak[0] = max(peak[0], tree_pss(root))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    wall = time.monotonic() - started
    stop.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"sweep of {n} studies failed ({code}); see {work / 'sweep.log'}")
    trials, trial_s = trial_times(work / "out" / "quickstart" / "tune")
    return {"studies": n, "trials": trials, "wall_s": wall, "trial_s": trial_s,
            "peak_pss_gb": peak[0] / 1e9}  # fmt: skip


def trial_times(tune_dir: Path) -> tuple[int, float]:
    """Trials and their summed ``time_total_s`` (Tune's own clock: inside the trial only)."""
    import json

    count, total = 0, 0.0
    for result in tune_dir.rglob("result.json"):
        lines = result.read_text().strip().splitlines()
        if lines:
            count += 1
            total += float(json.loads(lines[-1]).get("time_total_s", 0.0))
    return count, total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, nargs="*", default=[1, 16, 64])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--slots", type=int, default=os.cpu_count() or 1)
    args = p.parse_args()
    print(f"machine: {os.cpu_count()} cores; slots = {args.slots}; trials/study = "
          f"{args.trials} search + 1 final; {args.epochs} epochs")  # fmt: skip
    print("| studies | trials | wall s | trial s | overhead s/trial | busy % | peak PSS GB |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for n in args.studies:
        with tempfile.TemporaryDirectory(prefix=f"scale{n}-") as tmp:
            r = run_sweep(n, args.trials, args.epochs, Path(tmp))
        slot_s = r["wall_s"] * args.slots
        overhead = (slot_s - r["trial_s"]) / max(1, r["trials"])
        print(f"| {n} | {r['trials']} | {r['wall_s']:.0f} | {r['trial_s']:.0f} | "
              f"{overhead:.2f} | {100 * r['trial_s'] / slot_s:.0f} | {r['peak_pss_gb']:.2f} |",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
