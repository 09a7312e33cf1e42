"""Reproducible mode end to end: the same small sweep at two concurrencies, and killed
mid-search then re-run, gives a byte-identical results.csv; no finished trial runs twice."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.integration

SMALL = [
    "encoder=[eat]",
    "dataset=[synth_events]",
    "probe=[linear,protobin]",
    "dataset.synth_events.options.train_clips=24",
    "dataset.synth_events.options.valid_clips=12",
    "dataset.synth_events.options.test_clips=12",
    "search.trials=6",
    "search.startup_trials=2",
    "search.batch_size=2",
    "search.grace_epochs=1",
    "search.reduction_factor=2",
    "train.epochs=3",
    "train.batch_size=8",
    "final.seeds=[0,1]",
]
TRIALS = 2 * (6 + 2)  # studies x (search + final)


def _cmd(
    tmp: Path, out: Path, slots: int, extra_args: tuple[str, ...] = (), **extra: str
) -> tuple[list[str], dict[str, str]]:
    env = {
        **os.environ,
        **extra,
        "UNMUTE_STORE": str(tmp / "store"),
        "UNMUTE_DATA": str(tmp / "data"),
        "RAY_AUTH_MODE": "disabled",
        "PYTHONUNBUFFERED": "1",
        # results carry the git SHA: pin it, so a commit made while this test runs is no diff
        "UNMUTE_GIT_SHA": "test-sha",
    }
    args = [*SMALL, f"ray.max_concurrent_trials={slots}", *extra_args]
    return [sys.executable, "-m", "orchestrator.sweep", "quickstart", *args, "--out", str(out)], env


def _run(
    tmp: Path, out: Path, slots: int, extra_args: tuple[str, ...] = (), **extra: str
) -> subprocess.CompletedProcess:
    cmd, env = _cmd(tmp, out, slots, tuple(extra_args), **extra)
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _ledger_keys(out: Path) -> set[str]:
    """Keys in the studies' ledgers, read as bytes first (the driver replaces them meanwhile)."""
    keys = set()
    for path in out.glob("studies/*/trials.parquet"):
        try:
            keys |= set(pl.read_parquet(io.BytesIO(path.read_bytes()))["key"].to_list())
        except (OSError, pl.exceptions.PolarsError):
            continue
    return keys


def _trials_started(out: Path) -> list[int]:
    """Trials each Tune run of the sweep started (one folder per trial)."""
    runs = sorted((out / "tune").glob("sweep-*"), key=lambda p: p.stat().st_mtime)
    return [sum(1 for p in run.iterdir() if p.is_dir()) for run in runs]


def test_same_results_whatever_the_concurrency_and_after_a_kill(tmp_path):
    one = tmp_path / "one"
    _run(tmp_path, one, slots=1, extra_args=["ray.pack_seconds=0"])  # a Tune trial per trial
    assert _trials_started(one) == [TRIALS]
    two = tmp_path / "two"
    # trials packed into Tune trials, 3 at a time, a new Tune run every 4 Tune trials
    _run(tmp_path, two, slots=3, UNMUTE_TRIALS_PER_TUNE_RUN="4")
    assert sum(_trials_started(two)) <= TRIALS and len(_trials_started(two)) >= 2
    reference = (one / "results.csv").read_bytes()
    assert (two / "results.csv").read_bytes() == reference
    assert pl.read_csv(one / "results.csv").height == 2 * 2

    # killed mid-search (watching the output folder), then the same command again
    killed = tmp_path / "killed"
    cmd, env = _cmd(tmp_path, killed, slots=2)
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if len(_ledger_keys(killed)) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(killed.glob("studies/*/final.parquet"))
    finished = _ledger_keys(killed)
    assert 3 <= len(finished) < TRIALS

    # killed with trials packed; re-run one Tune trial per trial, so that Tune's trial folders
    # count the trials it started: only those the ledger did not hold
    resumed = _run(tmp_path, killed, slots=2, extra_args=["ray.pack_seconds=0"])
    assert "replayed from its ledger" in resumed.stderr
    assert (killed / "results.csv").read_bytes() == reference
    assert _trials_started(killed)[-1] == TRIALS - len(finished)
    ledger = pl.concat(
        [pl.read_parquet(p) for p in killed.glob("studies/*/trials.parquet")], how="diagonal"
    )
    assert ledger.height == TRIALS and ledger["key"].n_unique() == TRIALS
