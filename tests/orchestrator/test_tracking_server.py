"""A real ``mlflow server``: a sweep logged over HTTP through SweepTracker, killed and resumed,
read back over REST, and ``report --mlflow`` from the server equal to the file report."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from orchestrator.report import main as report_main
from orchestrator.tracking import SweepTracker
from tests.orchestrator.mlflow_server import count_requests, mlflow_server, rest, search_runs

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

EXPERIMENT = "quickstart"
SWEEP = "quickstart-0123456789ab"
CONFIG = {"name": "quickstart", "train": {"epochs": 3, "batch_size": 8}, "seeds": [0, 1]}
SEARCH, CONFIGS, SEEDS, EPOCHS = 4, 2, (0, 1), 3
CELLS = [("eat", "synth_events", "linear"), ("eat", "synth_events", "mhca"),
         ("beats", "synth_events", "linear"), ("beats", "synth_events", "mhca")]  # fmt: skip


def tracker(url: str) -> SweepTracker:
    return SweepTracker(
        url, EXPERIMENT, sweep_id=SWEEP, sweep_name="quickstart", out_dir="/outputs/quickstart",
        config=CONFIG,
    )  # fmt: skip


def score(study: int, config: int, seed: int) -> float:
    return 20.0 + 7.0 * study - 3.0 * config + 0.5 * seed


def run_study(t: SweepTracker, index: int, *, kill_at: int | None = None) -> list[dict]:
    """One study as the scheduler drives it: search, final seeds, selection (config 0).
    ``kill_at``: stop (the driver dies) when that many search trials have started."""
    backbone, dataset, probe = CELLS[index]
    study = f"study-{index}"
    tags = {"backbone": backbone, "dataset": dataset, "probe": probe, "dataset_version": "1"}
    t.study_run(study, tags)
    for n in range(SEARCH):
        key = f"{study}/search/{n}"
        t.trial_started(study, key, "search", {"lr": 10.0 ** -(n + 2), "weight_decay": 0.01}, tags)
        for epoch in range(1, EPOCHS + 1):
            t.trial_result(key, {"val_score": 10.0 * epoch + n, "train_loss": 1.0 / epoch}, epoch)
        if kill_at is not None and n + 1 == kill_at:
            return []
        t.trial_finished(key, "FINISHED")
    rows, selected = [], []
    for config in range(CONFIGS):
        for seed in SEEDS:
            key = f"{study}/final/{config}-{seed}"
            seed_tags = {**tags, "seed": str(seed)}
            t.trial_started(
                study, key, "final", {"lr": 1e-3 * (config + 1), "seed": seed}, seed_tags
            )
            for epoch in range(1, EPOCHS + 1):
                t.trial_result(key, {"val_score": 50.0 - config}, epoch)
            t.trial_result(key, {"test_score": score(index, config, seed)}, EPOCHS)
            t.trial_finished(key, "FINISHED")
            if config == 0:
                selected.append(key)
                rows.append(
                    {"backbone": backbone, "dataset": dataset, "probe": probe, "seed": seed,
                     "score": score(index, config, seed), "dataset_version": "1"}
                )  # fmt: skip
    t.study_finished(
        study, "FINISHED", params={"best.lr": 1e-3}, metrics={"test_score_mean": 1.0},
        selected=selected,
    )  # fmt: skip
    return rows


def test_sweep_over_http_killed_resumed_and_read_back_over_rest(tmp_path: Path) -> None:
    with mlflow_server(tmp_path / "server") as url, count_requests() as calls:
        first = tracker(url)
        setup = sum(calls.values())
        before = Counter(calls)
        rows = run_study(first, 0)
        per_study = sum(calls.values()) - setup
        study_calls = {k[0] + " " + k[1]: v for k, v in (calls - before).items()}
        rows += run_study(first, 1)
        run_study(first, 2, kill_at=2)  # killed mid-search: buffers lost, runs left RUNNING
        del first

        resumed = tracker(url)
        assert resumed.close_stale() == 2  # study-2 and its running search/1
        for index in (0, 1):  # finished studies: nothing rerun (the scheduler skips them)
            assert resumed.study_run(f"study-{index}", {}) == resumed.study_run(
                f"study-{index}", {}
            )
        rows += run_study(resumed, 2)
        rows += run_study(resumed, 3)
        results = tmp_path / "results.csv"
        pl.DataFrame(rows).write_csv(results)
        resumed.log_artifacts(resumed.sweep_run_id, [results], "report")
        resumed.close("FINISHED")

        trials = SEARCH + CONFIGS * len(SEEDS)
        print(
            f"\nHTTP requests: one study of {trials} trials x {EPOCHS} epochs = {per_study} "
            f"({per_study / trials:.2f} per trial); tracker setup {setup}; by endpoint: "
            f"{study_calls}"
        )
        # batched: create + log_batch + close per trial, the selected seeds' tags, the study's
        # search, create, summary and close
        assert per_study == 3 * trials + len(SEEDS) + 4
        assert not [k for k in calls if k[1].endswith(("log-metric", "log-parameter"))]

        experiment = rest(url, f"experiments/get-by-name?experiment_name={EXPERIMENT}")
        eid = experiment["experiment"]["experiment_id"]
        runs = search_runs(url, eid)
        sweeps = [r for r in runs if r["tags"].get("kind") == "sweep"]
        studies = [r for r in runs if r["tags"].get("kind") == "study"]
        trial_runs = [r for r in runs if r["tags"].get("kind") == "trial"]
        assert {r["status"] for r in runs} == {"FINISHED"}  # nothing left RUNNING
        assert {r["tags"]["sweep_id"] for r in runs} == {SWEEP}
        (sweep,) = sweeps
        assert len(studies) == 4 and len(trial_runs) == 4 * trials
        assert {s["tags"]["mlflow.parentRunId"] for s in studies} == {sweep["run_id"]}
        study_ids = {s["tags"]["study_id"]: s["run_id"] for s in studies}
        keys = Counter(r["tags"]["trial_key"] for r in trial_runs)
        assert set(keys.values()) == {1}  # no duplicate trial runs after the resume
        for run in trial_runs:
            assert run["tags"]["mlflow.parentRunId"] == study_ids[run["tags"]["study_id"]]
            assert run["params"]["epochs"] == "3" and run["params"]["batch_size"] == "8"
            assert "hp.lr" not in run["metrics"]  # hyperparameters are params only (#23)
        rerun = next(r for r in trial_runs if r["tags"]["trial_key"] == "study-2/search/1")
        assert rerun["tags"]["restarts"] == "1" and rerun["metrics"]["val_score"] == 31.0
        selected = search_runs(url, eid, "tags.selected = 'true'")
        assert len(selected) == len(rows) == 4 * len(SEEDS)
        assert len(search_runs(url, eid, "tags.selected = 'false'")) == 4 * len(SEEDS)
        assert sweep["params"]["config.train.epochs"] == "3"
        listed = rest(url, f"artifacts/list?run_id={sweep['run_id']}")
        assert {"config.json", "report"} <= {f["path"] for f in listed["files"]}

        # the report from the server equals the report from the results file
        common = ["--bootstrap", "0", "--tie-rule", "opponent"]
        out_m, out_f = tmp_path / "from-mlflow", tmp_path / "from-file"
        assert report_main(["--mlflow", EXPERIMENT, "--tracking-uri", url, "--out", str(out_m), *common]) == 0  # fmt: skip
        assert report_main(["--results", str(results), "--out", str(out_f), *common]) == 0
        tables = sorted(p.name for p in out_f.glob("*.csv"))
        assert {"summary.csv", "win_matrix.csv"} <= set(tables)
        for name in tables:
            assert pl.read_csv(out_m / name).equals(pl.read_csv(out_f / name)), name
