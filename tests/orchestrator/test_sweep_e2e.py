"""The whole pipeline on the embedded default, shrunk: sweep -> results -> report -> MLflow,
then a killed sweep re-run that finishes without redoing finished work."""

from __future__ import annotations

import json
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
    "probe=[linear,protobin]",
    "dataset.synth_events.options.train_clips=24",
    "dataset.synth_events.options.valid_clips=12",
    "dataset.synth_events.options.test_clips=12",
    "dataset.synth_control.options.train_clips=20",
    "dataset.synth_control.options.valid_clips=10",
    "dataset.synth_control.options.test_clips=10",
    "search.trials=3",
    "search.startup_trials=2",
    "search.grace_epochs=1",
    "train.epochs=2",
    "train.batch_size=8",
    "final.seeds=[0,1]",
]


def _cmd(out: Path, store: Path, data: Path) -> tuple[list[str], dict[str, str]]:
    env = {
        **os.environ,
        "UNMUTE_STORE": str(store),
        "UNMUTE_DATA": str(data),
        "RAY_AUTH_MODE": "disabled",
        "PYTHONUNBUFFERED": "1",
    }
    return [
        sys.executable,
        "-m",
        "orchestrator.sweep",
        "quickstart",
        *SMALL,
        "--out",
        str(out),
    ], env


def _mlflow_runs(out: Path) -> pl.DataFrame:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    return pl.DataFrame(
        [
            {
                "run_id": r.info.run_id,
                "status": r.info.status,
                "kind": r.data.tags.get("kind"),
                "stage": r.data.tags.get("stage"),
                "study_id": r.data.tags.get("study_id"),
                "trial_key": r.data.tags.get("trial_key"),
                "sweep_id": r.data.tags.get("sweep_id"),
                "selected": r.data.tags.get("selected"),
                "parent": r.data.tags.get("mlflow.parentRunId"),
                "test_score": r.data.metrics.get("test_score"),
            }
            for r in runs
        ]
    )


def test_sweep_runs_end_to_end_and_resumes_after_a_kill(tmp_path):
    out, store, data = tmp_path / "out", tmp_path / "store", tmp_path / "data"
    cmd, env = _cmd(out, store, data)

    # 1) start, kill the whole process tree once the first study has finished
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline and proc.poll() is None:
        if list(out.glob("studies/*/final.parquet")):
            break
        time.sleep(0.5)
    assert proc.poll() is None, proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p: p.stat().st_mtime_ns for p in out.glob("studies/*/final.parquet")}
    assert finished

    # 2) the same command with --resume finishes the sweep without redoing finished studies
    done = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line or "Error" in line]
    assert done.returncode == 0, "\n".join(errors[-40:]) or done.stderr[-4000:]
    assert "already finished; skipping" in done.stderr
    for path, mtime in finished.items():
        assert path.stat().st_mtime_ns == mtime

    # no search point was run twice, though some studies were interrupted mid-search
    for trials_file in out.glob("studies/*/trials.parquet"):
        search = pl.read_parquet(trials_file).filter(pl.col("stage") == "search")
        assert search.height == 3
        assert search["param.lr"].n_unique() == 3, trials_file

    # results: one row per (backbone, dataset, probe, seed), scores are percentages
    results = pl.read_csv(out / "results.csv")
    assert results.height == 1 * 2 * 2 * 2
    assert set(results["backbone"]) == {"eat@random-tiny"}
    assert set(results["probe"]) == {"linear", "protobin"}
    assert results["score"].is_between(0, 100).all()
    assert set(results["weights_id"].str.slice(0, 6)) == {"random"}
    assert {"git_sha", "version.torch", "device"} <= set(results.columns)

    # report files and the printed win matrix
    for name in ("summary.csv", "win_matrix.csv", "win_matrix.png", "report.md"):
        assert (out / "report" / name).stat().st_size > 0
    wins = pl.read_csv(out / "report" / "win_matrix.csv")
    assert wins.columns == ["probe", *wins["probe"].to_list()]
    # the first minute: no library banner (Tune's box), no progress bar between log lines
    output = done.stdout + done.stderr
    assert "Configuration for experiment" not in output and "9223372036854775807" not in output
    assert "study/s]" not in output, "one progress display: the driver's log lines"
    # the run names its report (its text stays in the file, not on the terminal)
    assert str(out / "report" / "report.md") in done.stdout
    report = (out / "report" / "report.md").read_text()
    assert "linear" in report and "protobin" in report

    # MLflow: one sweep run (reused by the resume), a run per study under it, every trial a
    # nested child run, no trial logged twice, nothing left RUNNING
    runs = _mlflow_runs(out)
    sweep_id = json.loads((out / "sweep.json").read_text())["sweep_id"]
    assert set(runs["sweep_id"]) == {sweep_id}
    (sweep_run,) = runs.filter(pl.col("kind") == "sweep")["run_id"]
    studies = runs.filter(pl.col("kind") == "study")
    assert studies.height == 4 and set(studies["status"]) == {"FINISHED"}
    assert set(studies["parent"]) == {sweep_run}
    trials = runs.filter(pl.col("kind") == "trial")
    assert trials["trial_key"].n_unique() == trials.height
    # a trial the kill interrupted is closed as KILLED and rerun as a new trial
    assert set(trials["status"]) <= {"FINISHED", "KILLED"}
    trials = trials.filter(pl.col("status") == "FINISHED")
    assert set(trials["parent"]) <= set(studies["run_id"])
    per_study = trials.group_by("study_id", "stage").len()
    assert per_study.filter(pl.col("stage") == "search")["len"].to_list() == [3] * 4
    assert per_study.filter(pl.col("stage") == "final")["len"].to_list() == [2] * 4
    finals = trials.filter(pl.col("stage") == "final")
    assert finals["test_score"].is_not_null().all()
    assert set(finals["selected"]) == {"true"}  # top_k = 1: every final run is the selection
    assert runs.filter(pl.col("selected") == "true").height == results.height
    assert f"MLflow UI: mlflow ui --backend-store-uri sqlite:///{out}" in done.stdout

    # the report from MLflow equals the report from results.csv
    from orchestrator.report import main as report_main

    common = ["--bootstrap", "0", "--out"]
    uri = f"sqlite:///{out / 'mlflow.db'}"
    assert (
        report_main(["--mlflow", "quickstart", "--tracking-uri", uri, *common, str(out / "m")]) == 0
    )
    assert report_main(["--results", str(out / "results.csv"), *common, str(out / "f")]) == 0
    for name in ("summary.csv", "win_matrix.csv"):
        assert pl.read_csv(out / "m" / name).equals(pl.read_csv(out / "f" / name)), name
