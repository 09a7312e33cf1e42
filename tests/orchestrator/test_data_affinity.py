"""Data affinity (#17) in a real sweep on a private Ray: trial workers keep their splits placed
and reuse them, so the sweep loads each split about once per worker, not once per trial; every
result row says the precision it trained in."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.integration

SMALL = [
    "encoder=[eat]",
    "dataset=[synth_events]",
    "probe=[linear,protobin]",
    "dataset.synth_events.options.train_clips=16",
    "dataset.synth_events.options.valid_clips=8",
    "dataset.synth_events.options.test_clips=8",
    "search.trials=6",
    "search.startup_trials=2",
    "search.batch_size=2",
    "search.grace_epochs=1",
    "search.reduction_factor=2",
    "train.epochs=2",
    "train.batch_size=8",
    "final.seeds=[0,1]",
    "ray.max_concurrent_trials=2",
    "ray.address=local",
]
TRIALS = 2 * (6 + 2)  # studies x (search + final)
SPLITS = 3  # one (encoder, dataset) pair: train, valid, test


def test_a_sweep_loads_each_split_about_once_per_worker(tmp_path: Path):
    env = {
        **os.environ,
        "UNMUTE_STORE": str(tmp_path / "store"),
        "UNMUTE_DATA": str(tmp_path / "data"),
        "RAY_AUTH_MODE": "disabled",
        "PYTHONUNBUFFERED": "1",
    }
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "orchestrator.sweep", "quickstart", *SMALL, "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    found = re.findall(r"splits loaded (\d+) times by (\d+) trial workers", done.stderr)
    assert found, done.stderr[-3000:]
    loads, workers = map(int, found[-1])
    print(f"{TRIALS} trials: splits loaded {loads} times by {workers} workers")
    assert 1 <= workers <= 4  # two slots; Tune may replace an actor now and then
    assert SPLITS <= loads <= SPLITS * workers < SPLITS * TRIALS  # per worker, not per trial
    results = pl.read_csv(out / "results.csv")
    assert set(results["precision"].to_list()) == {"fp32"}  # CPU: auto is fp32
