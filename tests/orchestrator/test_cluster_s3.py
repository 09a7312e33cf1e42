"""S3 end to end on a real local S3 server (moto): data, store, Tune state and outputs all under
``UNMUTE_HOME=s3://...``; a second run on a "fresh machine" (an empty local mirror) resumes from
S3 and recomputes nothing. Plus ``orchestrator.data --prepare`` writing a staged dataset to S3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.cluster_fixtures import REPO, TINY_SEARCH, moto_s3  # noqa: F401

pytestmark = pytest.mark.integration

TINY = [
    "encoder=[eat]",
    "dataset=[synth_control]",
    "probe=[linear]",
    "dataset.synth_control.options.train_clips=16",
    "dataset.synth_control.options.valid_clips=8",
    "dataset.synth_control.options.test_clips=8",
    *TINY_SEARCH,
]


def _fs(env: dict[str, str]):
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    return s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={"endpoint_url": env["AWS_ENDPOINT_URL"]},
    )


def _sweep(env: dict[str, str], home: str, machine: Path) -> subprocess.CompletedProcess:
    machine.mkdir(parents=True, exist_ok=True)
    run_env = {
        **os.environ,
        **env,
        "UNMUTE_HOME": home,
        "UNMUTE_MIRROR": str(machine / "mirror"),
        "UNMUTE_NODE_CACHE": str(machine / "cache"),
        "PYTHONPATH": str(REPO),
        "RAY_AUTH_MODE": "disabled",
    }
    for var in ("UNMUTE_OUT_ROOT", "UNMUTE_DATA", "UNMUTE_STORE", "UNMUTE_TUNE_STORAGE"):
        run_env.pop(var, None)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.sweep", "quickstart", *TINY],
        env=run_env,
        cwd=machine,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_quickstart_on_s3_then_resumes_from_s3_on_a_fresh_machine(moto_s3, tmp_path):  # noqa: F811
    home = "s3://bench/home"
    first = _sweep(moto_s3, home, tmp_path / "machine1")
    assert first.returncode == 0, first.stderr[-4000:]
    fs = _fs(moto_s3)
    out = "bench/home/outputs/quickstart"
    files = set(fs.find("bench/home"))
    for name in ("results.csv", "sweep.json", "mlflow.db", "report/report.md"):
        assert f"{out}/{name}" in files, name
    finals = [f for f in files if f.startswith(f"{out}/studies/") and f.endswith("final.parquet")]
    assert len(finals) == 1
    assert any(f.startswith(f"{out}/tune/") for f in files)  # Tune state on S3
    manifests = sorted(f for f in files if f.startswith("bench/home/store/") and
                       f.endswith("manifest.json"))  # fmt: skip
    assert len(manifests) == 3  # train, valid, test
    stamps = {f: fs.info(f)["LastModified"] for f in [*manifests, *finals]}
    results = pl.read_csv(fs.open(f"{out}/results.csv"))
    trials = pl.read_parquet(fs.open(f"{out}/studies/{finals[0].split('/')[-2]}/trials.parquet"))
    # nothing is written under the working folder: everything went to S3
    assert not (tmp_path / "machine1" / "outputs").exists()
    assert not (tmp_path / "machine1" / "data").exists()

    # a fresh machine (empty mirror, empty node cache) resumes from S3: nothing recomputed
    second = _sweep(moto_s3, home, tmp_path / "machine2")
    assert second.returncode == 0, second.stderr[-4000:]
    assert "already finished; skipping" in second.stderr
    assert "pulled" in second.stderr
    fs = _fs(moto_s3)
    assert {f: fs.info(f)["LastModified"] for f in stamps} == stamps
    again = pl.read_parquet(fs.open(f"{out}/studies/{finals[0].split('/')[-2]}/trials.parquet"))
    assert again.height == trials.height
    assert pl.read_csv(fs.open(f"{out}/results.csv")).equals(results)


def test_prepare_stages_a_dataset_onto_s3_and_the_preflight_sees_it(moto_s3, tmp_path):  # noqa: F811
    from orchestrator.datasets import get_dataset, open_split
    from orchestrator.datasets.prepare import is_staged

    # a folder in the canonical layout (generated audio), staged to S3 as a "local" source
    synth = get_dataset("synth_control", train_clips=4, valid_clips=2, test_clips=2)
    from orchestrator.datasets.synth import ensure_generated

    folder = ensure_generated(synth, tmp_path / "gen")
    env = {**os.environ, **moto_s3, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.data", "esc50", "--prepare", "--source",
         str(folder), "--data-root", "s3://bench/data", "--no-progress"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    staged = done.stdout.strip().rsplit(" ", 1)[-1]
    assert staged.startswith("s3://bench/data/esc50"), done.stdout
    assert is_staged(get_dataset("esc50", source=str(folder)), "s3://bench/data")
    # the staged copy is read in place from S3 (no local path involved)
    on_s3 = get_dataset("synth_control", source=staged)  # same classes as the staged files
    assert len(open_split(on_s3, "test", "s3://unused")) == 2
