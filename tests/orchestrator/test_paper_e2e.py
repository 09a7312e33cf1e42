"""The ``paper`` sweep, shrunk onto the quickstart's generated data and tiny random encoders:
the per-dataset probe settings reach the trials, and only lr / weight decay are searched."""

from __future__ import annotations

import os
import subprocess
import sys

import polars as pl
import pytest

from orchestrator.config import load
from orchestrator.plan import make_plan

pytestmark = pytest.mark.integration

SHRUNK = [
    "encoder=[eat]",
    "dataset=[synth_events]",
    "probe=[protobin]",
    "encoder_defaults.checkpoint=random",
    "+encoder_defaults.overrides.size=tiny",
    "+encoder_defaults.overrides.seed=0",
    "dataset.synth_events.options.train_clips=16",
    "dataset.synth_events.options.valid_clips=8",
    "dataset.synth_events.options.test_clips=8",
    "+probe_overrides.synth_events={protobin: {hparams: {prototypes_per_class: 3}}}",
    "ray.cpus_per_trial=1",
    "ray.gpus_per_trial=0",
    "ray.cpus_per_extraction=1",
    "ray.gpus_per_extraction=0",
    "ray.max_concurrent_studies=4",
    "ray.max_concurrent_trials=2",
    "search.trials=2",
    "search.startup_trials=1",
    "search.grace_epochs=1",
    "search.top_k=1",
    "train.epochs=2",
    "train.batch_size=8",
    "extract.batch_size=8",
    "final.seeds=[0,1]",
]


def test_shrunk_paper_sweep_runs_with_per_dataset_probe_settings(tmp_path):
    out = tmp_path / "out"
    env = {
        **os.environ,
        "UNMUTE_STORE": str(tmp_path / "store"),
        "UNMUTE_DATA": str(tmp_path / "data"),
        "RAY_ADDRESS": "local",  # a private cluster, never one another process started
        "RAY_AUTH_MODE": "disabled",
    }
    cmd = [sys.executable, "-m", "orchestrator.sweep", "paper", *SHRUNK, "--out", str(out)]
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-4000:]

    cfg = load("paper", SHRUNK, out_dir=str(out))
    (study,) = make_plan(cfg).studies
    assert study.probe.hparams == {"prototypes_per_class": 3} and study.probe.search == "default"
    other = [o for o in SHRUNK if not o.startswith("dataset")] + ["dataset=[synth_control]"]
    default_j = load("paper", other, str(out))
    assert make_plan(default_j).studies[0].probe.hparams == {"prototypes_per_class": 20}
    trials = pl.read_parquet(out / "studies" / study.study_id / "trials.parquet")
    params = sorted(c for c in trials.columns if c.startswith("param."))
    assert params == ["param.lr", "param.weight_decay"]  # J is not searched
    final = pl.read_parquet(out / "studies" / study.study_id / "final.parquet")
    assert final.height == 2
    assert all("'prototypes_per_class': 3" in h for h in final["probe_hparams"])  # reached trials
    results = pl.read_csv(out / "results.csv")
    assert results.height == 2 and results["score"].is_between(0, 100).all()
    assert (out / "report" / "report.md").stat().st_size > 0

    # Figure 4 from what the sweep itself saved: the selected protobin probe and its encoder
    clip = next((tmp_path / "data").rglob("*.flac"))
    png = tmp_path / "explain.png"
    shown = subprocess.run(
        [sys.executable, "-m", "orchestrator.explain", "--study", str(out / "studies" /
         study.study_id), "--clip", str(clip), "--out", str(png)],
        check=False, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-4000:]
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    assert "prototypes #" in shown.stdout  # each top class names its most similar prototypes
