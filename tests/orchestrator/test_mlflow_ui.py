"""Issue #23: a finished tiny sweep's MLflow store, read with the client the way the UI reads
it: self-describing unique run names, the trial state, the sweep run's tables, images and
metrics, dataset inputs, MLflow's own tags and the experiment's description and kind; and a
copied output folder that still serves its artifacts after ``orchestrator.relocate``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from orchestrator.relocate import main as relocate_main
from orchestrator.tracking import SweepTracker
from tests.orchestrator.test_sweep_e2e import _cmd

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, str]:
    """One finished tiny quickstart sweep (encoder eat, probes linear and protobin, two
    datasets): its output folder and the final lines it printed."""
    work = tmp_path_factory.mktemp("mlflow_ui")
    out = work / "out"
    cmd, env = _cmd(out, work / "store", work / "data")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done.stdout


def _client(out: Path) -> tuple[MlflowClient, str]:
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    return client, client.get_experiment_by_name("quickstart").experiment_id


def _runs(client: MlflowClient, eid: str, query: str = "") -> list:
    return client.search_runs([eid], filter_string=query, max_results=5000)


def test_trial_runs_name_themselves_and_say_their_state(sweep) -> None:
    out, _ = sweep
    client, eid = _client(out)
    trials = _runs(client, eid, "tags.kind = 'trial'")
    names = [r.info.run_name for r in trials]
    assert len(trials) > 10 and len(set(names)) == len(names)  # unique within the sweep
    for run in trials:
        tags = run.data.tags
        label = f"{tags['backbone']}·{tags['dataset']}·{tags['probe']}·"
        assert run.info.run_name.startswith(label), run.info.run_name
        suffix = run.info.run_name.removeprefix(label)
        assert suffix.startswith("search-" if tags["stage"] == "search" else ("seed", "cfg"))
        assert not any(m.startswith("hp.") for m in run.data.metrics)  # params only
        assert tags["state"] in ("finished", "pruned"), tags
        if tags["state"] == "pruned":  # stopped early: it says at which epoch
            epochs = client.get_metric_history(run.info.run_id, "val_score")
            assert int(tags["pruned_epoch"]) == max(m.step for m in epochs) < 2
        assert run.info.status == "FINISHED"
    assert any(r.data.tags["state"] == "pruned" for r in trials)
    studies = _runs(client, eid, "tags.kind = 'study'")
    assert {r.info.run_name for r in studies} == {
        f"eat@random-tiny·{d}·{p}"
        for d in ("synth_events", "synth_control")
        for p in ("linear", "protobin")
    }
    # the search trial whose configuration the study chose is marked, one per study at least
    chosen = _runs(client, eid, "tags.chosen = 'true'")
    assert {r.data.tags["study_id"] for r in chosen} == {r.data.tags["study_id"] for r in studies}
    assert {r.data.tags["stage"] for r in chosen} == {"search"}


def test_final_runs_have_dataset_inputs_and_standard_tags(sweep) -> None:
    out, _ = sweep
    client, eid = _client(out)
    finals = _runs(client, eid, "tags.stage = 'final'")
    assert finals
    for run in finals:
        (inp,) = run.inputs.dataset_inputs
        assert inp.dataset.name == run.data.tags["dataset"]
        profile = json.loads(inp.dataset.profile)
        assert profile["version"] == run.data.tags["dataset_version"]
        assert profile["splits"]["train"]["clips"] in (20, 24)
        assert len(run.data.tags["mlflow.source.git.commit"]) == 40
        assert run.data.tags["mlflow.source.name"] == "orchestrator.sweep"
        assert run.data.tags["mlflow.user"]
    experiment = client.get_experiment(eid)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "quickstart" in experiment.tags["mlflow.note.content"]
    assert "Protocol" in experiment.tags["mlflow.note.content"]


def test_each_cell_logs_its_selected_probe_as_a_model(sweep) -> None:
    import yaml

    out, _ = sweep
    client, eid = _client(out)
    for study in _runs(client, eid, "tags.kind = 'study'"):
        (output,) = study.outputs.model_outputs
        model = client.get_logged_model(output.model_id)
        assert model.status == "READY" and model.source_run_id == study.info.run_id
        assert model.params["probe"] == study.data.tags["probe"]
        spec = yaml.safe_load(Path(_model_file(client, model.model_id)).read_text())
        inputs = json.loads(spec["signature"]["inputs"])
        outputs = json.loads(spec["signature"]["outputs"])
        assert inputs[0]["tensor-spec"]["shape"][-1] == int(model.params["embed_dim"])
        assert outputs[0]["tensor-spec"]["shape"][-1] == int(model.params["num_classes"])


def _model_file(client: MlflowClient, model_id: str) -> str:
    import mlflow.artifacts

    uri = client.get_logged_model(model_id).artifact_location
    return mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/MLmodel")


def test_sweep_run_is_the_comparison_page(sweep) -> None:
    out, _ = sweep
    client, eid = _client(out)
    (run,) = _runs(client, eid, "tags.kind = 'sweep'")
    tables = {f.path for f in client.list_artifacts(run.info.run_id, "tables")}
    assert {"tables/summary.json", "tables/results.json", "tables/win_matrix.json"} <= tables
    # the UI renders a logged table from its JSON (columns + data) and the run's tag
    logged = {t["path"]: t["type"] for t in json.loads(run.data.tags["mlflow.loggedArtifacts"])}
    assert logged["tables/summary.json"] == "table"
    summary = json.loads(
        Path(client.download_artifacts(run.info.run_id, "tables/summary.json")).read_text()
    )
    assert len(summary["data"]) >= 4 and "backbone" in summary["columns"]
    figures = {f.path for f in client.list_artifacts(run.info.run_id, "figures")}
    assert any("win_matrix" in f and f.endswith(".png") for f in figures), figures
    assert run.data.metrics["cells_done"] == 4
    assert run.data.metrics["mean_rank.eat_random-tiny"] == 1.0  # the only encoder


def test_a_copied_output_folder_serves_its_artifacts(sweep, tmp_path: Path, capsys) -> None:
    out, printed = sweep
    assert "python -m orchestrator.relocate" in printed  # the final lines name the command
    copy = tmp_path / "laptop" / "renamed"
    shutil.copytree(out, copy)
    shutil.rmtree(out / "mlartifacts")  # nothing may be read from the original any more
    try:
        assert relocate_main([str(copy)]) == 0
        assert "artifact locations now under" in capsys.readouterr().out
        client, eid = _client(copy)
        (run,) = _runs(client, eid, "tags.kind = 'sweep'")
        config = json.loads(
            Path(client.download_artifacts(run.info.run_id, "config.json")).read_text()
        )
        assert config["name"] == "quickstart"
        assert str(copy) in run.info.artifact_uri
        (study, *_) = _runs(client, eid, "tags.kind = 'study'")
        model_id = study.outputs.model_outputs[0].model_id
        spec = Path(_model_file(client, model_id)).read_text()  # read from the copy
        assert "signature:" in spec and model_id in spec
        assert relocate_main([str(copy)]) == 0  # twice: nothing left to change
        assert capsys.readouterr().out.startswith("0 ")
    finally:
        shutil.copytree(copy / "mlartifacts", out / "mlartifacts")


def test_relocate_names_a_folder_without_a_store(tmp_path: Path, capsys) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.relocate", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert str(tmp_path / "mlflow.db") in done.stderr and "mlartifacts" in done.stderr


def test_failed_trial_run_is_failed_with_its_reason(tmp_path: Path) -> None:
    tracker = SweepTracker(
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "quickstart",
        sweep_id="qs-f",
        sweep_name="quickstart",
        out_dir=tmp_path,
        config={"train": {"epochs": 3}},
        artifact_location=(tmp_path / "art").as_uri(),
    )
    tags = {"backbone": "eat", "dataset": "synth_events", "probe": "linear"}
    tracker.study_run("s", tags)
    for n, status in enumerate(("FAILED", "KILLED")):
        tracker.trial_started("s", f"s/search/{n}", "search", {"lr": 0.1}, tags)
        tracker.trial_finished(f"s/search/{n}", status, "RuntimeError: out of memory")
    tracker.close()
    runs = {r.info.run_name: r for r in tracker.client.search_runs([tracker.experiment_id])}
    failed = runs["eat·synth_events·linear·search-0"]
    assert failed.info.status == "FAILED" and failed.data.tags["state"] == "failed"
    assert "out of memory" in failed.data.tags["error"]
    assert runs["eat·synth_events·linear·search-1"].data.tags["state"] == "retried"


def test_a_sweep_resumed_in_a_moved_folder_points_its_store_at_it(tmp_path: Path) -> None:
    """The run's own pre-MLflow step: a store whose artifacts name the folder it was moved
    from reads them from its new place; a store elsewhere is left alone."""
    from types import SimpleNamespace

    from orchestrator.sweep import _relocate_store

    old, new = tmp_path / "old", tmp_path / "new"
    client = MlflowClient(f"sqlite:///{old / 'mlflow.db'}")
    exp = client.create_experiment("quickstart", artifact_location=(old / "mlartifacts").as_uri())
    run = client.create_run(exp)
    (old / "report.csv").write_text("backbone,score\n")
    client.log_artifact(run.info.run_id, str(old / "report.csv"), "report")
    old.rename(new)
    elsewhere = SimpleNamespace(out_dir=new, tracking_uri="http://mlflow:5000")
    _relocate_store(elsewhere)  # not the folder's own store: nothing to do
    moved = SimpleNamespace(out_dir=new, tracking_uri=f"sqlite:///{(new / 'mlflow.db').resolve()}")
    _relocate_store(moved)
    again = MlflowClient(moved.tracking_uri)
    assert again.get_experiment(exp).artifact_location == (new / "mlartifacts").as_uri()
    local = again.download_artifacts(run.info.run_id, "report/report.csv", str(tmp_path / "d"))
    assert Path(local).read_text().startswith("backbone")
