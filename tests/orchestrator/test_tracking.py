"""SweepTracker against a real sqlite MLflow store: nesting, identity, batching, resume."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.tracking import SweepTracker, make_sweep_id, ui_hint

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

CONFIG = {"name": "quickstart", "train": {"epochs": 3, "batch_size": 8}, "seeds": [0, 1]}
STUDY_TAGS = {"backbone": "eat", "dataset": "synth_events", "probe": "linear"}


def count_store_calls(t: SweepTracker) -> Counter:
    """Count the store calls a tracker makes (for a server, each is one HTTP request)."""
    calls: Counter = Counter()
    store = t.client._tracking_client.store
    for name in ("create_run", "log_batch", "update_run_info", "search_runs", "get_run"):
        method = getattr(store, name)

        def counted(*args, _name=name, _method=method, **kwargs):
            calls[_name] += 1
            return _method(*args, **kwargs)

        setattr(store, name, counted)
    return calls


def tracker(tmp_path: Path, sweep_id: str = "qs-1", **kw) -> SweepTracker:
    return SweepTracker(
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "quickstart",
        sweep_id=sweep_id,
        sweep_name="quickstart",
        out_dir=tmp_path / "out",
        config=CONFIG,
        artifact_location=(tmp_path / "art").as_uri(),
        **kw,
    )


def runs(tmp_path: Path, query: str = "") -> list:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("quickstart")
    return client.search_runs([exp.experiment_id], filter_string=query, max_results=5000)


def search_trial(t: SweepTracker, study: str, n: int, lr: float, epochs: int = 3) -> str:
    key = f"{study}/search/{n}"
    t.trial_started(study, key, "search", {"lr": lr, "weight_decay": 0.01}, STUDY_TAGS)
    for epoch in range(1, epochs + 1):
        t.trial_result(key, {"val_score": 10.0 * epoch + n, "train_loss": 1.0 / epoch}, epoch)
    return key


def final_trial(t: SweepTracker, study: str, config: int, seed: int, finish: bool = True) -> str:
    key = f"{study}/final/{config}-{seed}"
    t.trial_started(study, key, "final", {"lr": 0.001 * (config + 1), "seed": seed}, STUDY_TAGS)
    t.trial_result(key, {"val_score": 50.0 + config, "test_score": 40.0 + seed}, 3)
    if finish:
        t.trial_finished(key, "FINISHED")
    return key


def test_sweep_study_and_trial_runs_are_nested_tagged_and_batched(tmp_path: Path) -> None:
    t = tracker(tmp_path)
    calls = count_store_calls(t)
    study = t.study_run("s1", {**STUDY_TAGS, "encoder": "eat"})
    for n in range(4):
        t.trial_finished(search_trial(t, "s1", n, lr=10.0 ** -(n + 2)), "FINISHED")
    finals = [final_trial(t, "s1", c, s) for c in (0, 1) for s in (0, 1)]
    t.study_finished(
        "s1",
        "FINISHED",
        params={"best.lr": 0.001},
        metrics={"test_score_mean": 40.5},
        selected=finals[:2],
    )
    t.close("FINISHED")
    calls = Counter(calls)  # the tracker's own calls (the checks below read the same store)

    by_kind: dict[str, list] = {}
    for run in runs(tmp_path):
        by_kind.setdefault(run.data.tags["kind"], []).append(run)
        assert run.data.tags["sweep_id"] == "qs-1" and run.info.status == "FINISHED"
    (sweep,) = by_kind["sweep"]
    (study_run,) = by_kind["study"]
    assert study_run.info.run_id == study and sweep.info.run_id == t.sweep_run_id
    assert study_run.data.tags["mlflow.parentRunId"] == t.sweep_run_id
    assert study_run.data.params["best.lr"] == "0.001"
    assert study_run.data.metrics["test_score_mean"] == 40.5
    assert sweep.data.params["config.train.epochs"] == "3"
    trials = by_kind["trial"]
    assert len(trials) == 8 and {r.data.tags["mlflow.parentRunId"] for r in trials} == {study}
    for run in trials:
        assert run.data.params["epochs"] == "3" and run.data.params["batch_size"] == "8"
        assert not any(m.startswith("hp.") for m in run.data.metrics)  # params only (#23)
        assert run.data.tags["state"] == "finished"
        assert run.data.tags["probe"] == "linear"
    # names for reading (#23): backbone·dataset·probe plus the trial, unique in the sweep
    names = {r.data.tags["trial_key"]: r.info.run_name for r in trials}
    assert names["s1/search/2"] == "eat·synth_events·linear·search-2"
    assert names["s1/final/0-1"] == "eat·synth_events·linear·seed1"
    assert names["s1/final/1-0"] == "eat·synth_events·linear·cfg1·seed0"
    assert len(set(names.values())) == 8 and study_run.info.run_name == "eat·synth_events·linear"
    assert sweep.data.tags["mlflow.source.name"] == "orchestrator.sweep"
    selected = {r.data.tags["trial_key"]: r.data.tags.get("selected") for r in trials}
    assert selected == {
        **{f"s1/search/{n}": None for n in range(4)},
        "s1/final/0-0": "true",
        "s1/final/0-1": "true",
        "s1/final/1-0": "false",
        "s1/final/1-1": "false",
    }
    history = t.client.get_metric_history(
        next(r.info.run_id for r in trials if r.data.tags["trial_key"] == "s1/search/2"),
        "val_score",
    )
    assert [m.step for m in history] == [1, 2, 3]
    # hyperparameters filter as params
    assert len(runs(tmp_path, "params.lr = '0.001' and tags.stage = 'search'")) == 1
    # batched: per trial one create, one log_batch, one close; no per-metric request
    assert calls["create_run"] == 1 + 8 and calls["get_run"] == 0
    assert calls["log_batch"] == 8 + 2 + 1  # trials, selected=true of 2 seeds, study summary
    assert calls["update_run_info"] == 8 + 1 + 1  # trials, study, sweep
    assert calls["search_runs"] == 1  # the study's runs, once


def test_kill_then_resume_leaves_no_running_and_no_duplicates(tmp_path: Path) -> None:
    first = tracker(tmp_path)
    first.study_run("s1", STUDY_TAGS)
    first.trial_finished(search_trial(first, "s1", 0, 1e-3), "FINISHED")
    search_trial(first, "s1", 1, 1e-4)  # running when the driver dies
    first.study_run("s2", STUDY_TAGS)
    final_trial(first, "s2", 0, 0, finish=False)
    del first  # the driver is killed: nothing closed, buffers lost

    resumed = tracker(tmp_path)
    assert resumed.close_stale() == 4  # s1, s1/search/1, s2, s2/final/0-0 (not the sweep run)
    assert {r.info.status for r in runs(tmp_path, "tags.kind = 'trial'")} == {"FINISHED", "KILLED"}
    resumed.study_run("s1", STUDY_TAGS)
    resumed.trial_finished(search_trial(resumed, "s1", 1, 1e-4), "FINISHED")  # rerun, same point
    resumed.study_finished("s1", "FINISHED")
    resumed.study_run("s2", STUDY_TAGS)
    keys = [final_trial(resumed, "s2", 0, s) for s in (0, 1)]
    resumed.study_finished("s2", "FINISHED", selected=keys)
    resumed.close("FINISHED")

    all_runs = runs(tmp_path)
    assert {r.info.status for r in all_runs} == {"FINISHED"}
    assert Counter(r.data.tags["kind"] for r in all_runs) == {"sweep": 1, "study": 2, "trial": 4}
    trial_keys = [r.data.tags["trial_key"] for r in all_runs if r.data.tags["kind"] == "trial"]
    assert len(set(trial_keys)) == len(trial_keys)
    rerun = next(r for r in all_runs if r.data.tags.get("trial_key") == "s1/search/1")
    assert rerun.data.tags["restarts"] == "1"
    chosen = runs(tmp_path, "tags.selected = 'true'")
    assert sorted(r.data.tags["trial_key"] for r in chosen) == keys


def test_rerun_with_other_params_supersedes_the_old_run(tmp_path: Path) -> None:
    t = tracker(tmp_path)
    t.trial_finished(search_trial(t, "s1", 0, 1e-3), "FINISHED")
    t.trial_finished(search_trial(t, "s1", 0, 5e-4), "FINISHED")
    t.close()
    keys = Counter(r.data.tags["trial_key"] for r in runs(tmp_path, "tags.kind = 'trial'"))
    assert keys == {"s1/search/0": 1, "s1/search/0~superseded": 1}
    (old,) = runs(tmp_path, "tags.superseded = 'true'")
    assert old.info.status == "KILLED" and old.data.params["lr"] == "0.001"


def test_two_sweeps_in_one_experiment_stay_apart(tmp_path: Path) -> None:
    a, b = tracker(tmp_path, "qs-a"), tracker(tmp_path, "qs-b")
    a.trial_finished(search_trial(a, "s1", 0, 1e-3), "FINISHED")
    b.trial_finished(search_trial(b, "s1", 0, 1e-3), "FINISHED")
    assert b.close_stale() == 0  # a's running sweep run is not b's to close
    a.close()
    b.close()
    assert len(runs(tmp_path, "tags.sweep_id = 'qs-a'")) == 3
    assert len(runs(tmp_path, "tags.sweep_id = 'qs-b'")) == 3


def test_resume_with_a_changed_config_keeps_the_sweep_run(tmp_path: Path, caplog) -> None:
    first = tracker(tmp_path)
    first.close()
    changed = SweepTracker(
        f"sqlite:///{tmp_path / 'mlflow.db'}", "quickstart", sweep_id="qs-1",
        sweep_name="quickstart", out_dir=tmp_path / "out",
        config={**CONFIG, "new_default": tmp_path},  # a code change added a field (a Path)
    )  # fmt: skip
    assert changed.sweep_run_id == first.sweep_run_id
    assert "resolved config of sweep qs-1 changed" in caplog.text
    changed.close()
    (sweep,) = runs(tmp_path, "tags.kind = 'sweep'")
    assert sweep.info.status == "FINISHED"
    names = {f.path for f in changed.client.list_artifacts(sweep.info.run_id)}
    assert names == {"config.json", f"config-{sweep.data.tags['config_sha']}.json"}


def test_flush_on_size_and_unknown_trial(tmp_path: Path) -> None:
    t = tracker(tmp_path, flush_metrics=5)
    calls = count_store_calls(t)
    search_trial(t, "s1", 0, 1e-3, epochs=3)  # 2 hp + 6 metrics: flushed once past 5
    assert calls["log_batch"] == 1
    with pytest.raises(KeyError, match="never started"):
        t.trial_result("s1/search/9", {"val_score": 1.0}, 1)
    with pytest.raises(ValueError, match="FINISHED, FAILED, KILLED"):
        t.trial_finished("s1/search/0", "DONE")


def test_sweep_id_and_ui_hint(tmp_path: Path) -> None:
    one = make_sweep_id("quickstart", ["train.epochs=3", "probe=[linear]"], tmp_path)
    assert one == make_sweep_id("quickstart", ["probe=[linear]", "train.epochs=3"], tmp_path)
    assert one.startswith("quickstart-")
    assert one != make_sweep_id("quickstart", ["train.epochs=5", "probe=[linear]"], tmp_path)
    assert one != make_sweep_id("quickstart", ["train.epochs=3", "probe=[linear]"], tmp_path / "x")
    assert (
        ui_hint("sqlite:////o/mlflow.db")
        == "MLflow UI: mlflow ui --backend-store-uri sqlite:////o/mlflow.db"
    )
    assert (
        ui_hint("http://10.0.0.1:5000/", "7")
        == "MLflow UI: open http://10.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"
    )


def test_a_packed_trial_keeps_its_worker_start_and_end_times(tmp_path: Path) -> None:
    """A trial of a pack reaches the driver after it ran: its run carries the worker's times,
    so durations in the MLflow UI are the trial's, not the report's."""
    t = tracker(tmp_path)
    key = "s1/search/0"
    t.trial_started("s1", key, "search", {"lr": 0.1}, STUDY_TAGS, start_time=1_700_000_000.25)
    t.trial_finished(key, "FINISHED", end_time=1_700_000_003.5)
    (run,) = runs(tmp_path, f"tags.trial_key = '{key}'")
    assert run.info.start_time == 1_700_000_000_250
    assert run.info.end_time == 1_700_000_003_500
