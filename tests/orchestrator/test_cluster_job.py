"""The sweep as a cluster user runs it: a real ``ray start --head`` and real ``ray job submit
--working-dir``. Outputs land at the stable location (never in the job's working-dir copy),
MLflow holds the runs, a re-submission after a code change resumes without rerunning a finished
trial, and a job asking for a GPU on this CPU-only head fails at pre-flight."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import polars as pl
import pytest

from tests.cluster_fixtures import REPO, TINY_SEARCH, ray_head  # noqa: F401

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
ENTRY = ["python", "-m", "orchestrator.sweep", "quickstart", *TINY]


def _copy_with_a_change(dest: Path) -> Path:
    """The repository as a user has it after editing some code (a new working-dir package)."""
    shutil.copytree(
        REPO,
        dest,
        ignore=shutil.ignore_patterns(".git", "outputs", "data", "__pycache__", "*.db", ".*cache"),
    )
    readme = dest / "orchestrator" / "__init__.py"
    readme.write_text(readme.read_text() + "\n# edited after the first submission\n")
    return dest


def _trial_runs(db: Path) -> pl.DataFrame:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return pl.DataFrame(
        [
            {"kind": r.data.tags.get("kind"), "status": r.info.status, "stage": r.data.tags.get("stage")}
            for r in runs
        ]
    )


def test_job_keeps_outputs_at_the_stable_location_and_resumes(ray_head, tmp_path):  # noqa: F811
    home = tmp_path / "home"
    env_vars = {"UNMUTE_HOME": str(home), "RAY_AUTH_MODE": "disabled", "UNMUTE_PROGRESS_S": "5"}
    ray_head.submit(ENTRY, env_vars=env_vars, submission_id="quickstart-1")
    status, logs = ray_head.wait("quickstart-1", timeout=900)
    assert status == "SUCCEEDED", logs[-5000:]
    out = home / "outputs" / "quickstart"
    assert (out / "results.csv").stat().st_size > 0
    assert (out / "report" / "report.md").exists()
    assert list((home / "store").rglob("manifest.json"))
    assert f"outputs: {out}" in logs  # the driver says where everything lives
    assert "extract eat@random-tiny / synth_control" in logs or "extracted eat" in logs
    copies = list(ray_head.temp_dir.rglob("working_dir_files"))
    assert copies, "the job ran from a working-dir copy"
    for copy in copies:
        assert not list(copy.rglob("results.csv")), "outputs leaked into the job's copy"
        assert not list(copy.rglob("mlflow.db"))
    runs = _trial_runs(out / "mlflow.db")
    assert runs.filter(pl.col("kind") == "trial").height == 3  # 2 search + 1 final
    finals = {p: p.stat().st_mtime_ns for p in out.glob("studies/*/final.parquet")}
    assert len(finals) == 1

    # the same command from an edited checkout (a new working-dir package) resumes
    edited = _copy_with_a_change(tmp_path / "edited")
    ray_head.submit(ENTRY, env_vars=env_vars, submission_id="quickstart-2", working_dir=edited)
    status, logs = ray_head.wait("quickstart-2", timeout=600)
    assert status == "SUCCEEDED", logs[-5000:]
    assert "already finished; skipping" in logs
    assert {p: p.stat().st_mtime_ns for p in finals} == finals
    assert _trial_runs(out / "mlflow.db").filter(pl.col("kind") == "trial").height == 3


def test_a_gpu_job_on_a_cpu_only_head_fails_at_preflight(ray_head, tmp_path):  # noqa: F811
    env_vars = {"UNMUTE_HOME": str(tmp_path / "home"), "RAY_AUTH_MODE": "disabled"}
    started = time.monotonic()
    ray_head.submit(
        [*ENTRY, "ray.gpus_per_extraction=1"], env_vars=env_vars, submission_id="gpu-job"
    )
    status, logs = ray_head.wait("gpu-job", timeout=300)
    seconds = time.monotonic() - started
    assert status == "FAILED", logs[-3000:]
    assert "pre-flight" in logs and "an extraction asks for {CPU: 1, GPU: 1}" in logs, logs[-3000:]
    assert "nothing was started" in logs
    # "a job that cannot run says why within a minute" (measured: 13 s from submission)
    assert seconds < 60, f"took {seconds:.0f} s"
    assert not (tmp_path / "home" / "store").exists()  # no extraction ran
