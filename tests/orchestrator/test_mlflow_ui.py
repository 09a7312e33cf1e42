"""What a user sees of a finished sweep in the MLflow UI, read with the MLflow client.

One tiny sweep (real Ray, a real local sqlite store): run names that tell studies and trials
apart, trial states (pruned with their epoch, the chosen search trial), the sweep run as the
comparison page (tables, figures, key metrics), dataset inputs and MLflow's own source tags,
an experiment that describes itself, and an output folder that still opens after a copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SWEEP = [
    "quickstart",
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
    "search.top_k=2",
    "train.epochs=4",
    "train.batch_size=8",
    "final.seeds=[0]",
]
SEP = "\u00b7"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mlflow-ui")
    out = tmp / "out"
    env = {**os.environ, "UNMUTE_STORE": str(tmp / "store"), "UNMUTE_DATA": str(tmp / "data"),
           "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": "local"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.sweep", *SWEEP, "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id], max_results=5000)
    return {"out": out, "tmp": tmp, "client": client, "experiment": experiment, "runs": runs,
            "stdout": done.stdout}  # fmt: skip


def _kind(runs, kind):
    return [r for r in runs if r.data.tags.get("kind") == kind]


def test_runs_name_themselves(sweep):
    trials = _kind(sweep["runs"], "trial")
    names = [r.info.run_name for r in trials]
    assert len(names) == len(set(names)), "trial run names are unique within the sweep"
    for run in trials:
        tags = run.data.tags
        assert run.info.run_name.startswith(
            SEP.join([tags["backbone"], tags["dataset"], tags["probe"]]) + SEP
        ), run.info.run_name
    assert any(n.endswith(f"{SEP}search-3") for n in names)
    assert any(n.endswith(f"{SEP}seed0") and f"{SEP}cfg" not in n for n in names)
    assert any(n.endswith(f"{SEP}cfg1{SEP}seed0") for n in names), "top-k 2: a second config"
    studies = {r.info.run_name for r in _kind(sweep["runs"], "study")}
    assert studies == {f"eat@random-tiny{SEP}synth_events{SEP}{p}" for p in ("linear", "protobin")}


def test_trials_say_how_they_ended(sweep):
    client, trials = sweep["client"], _kind(sweep["runs"], "trial")
    pruned = 0
    for run in trials:
        tags = run.data.tags
        assert run.info.status == "FINISHED" and tags["state"] in ("finished", "pruned"), tags
        epochs = len(client.get_metric_history(run.info.run_id, "val_score"))
        if tags["state"] == "pruned":
            pruned += 1
            assert tags["stage"] == "search" and int(tags["pruned_at_epoch"]) == epochs < 4
        else:
            assert epochs == 4 and "pruned_at_epoch" not in tags
    assert pruned, "the sweep's settings prune some search trials"
    for study in _kind(sweep["runs"], "study"):
        sid = study.data.tags["study_id"]
        chosen = [r for r in trials if r.data.tags["study_id"] == sid and r.data.tags.get("chosen")]
        (run,) = chosen
        assert run.data.tags["stage"] == "search" and run.data.tags["chosen"] == "true"
        best = {k.removeprefix("best."): v for k, v in study.data.params.items()}
        assert all(run.data.params[k] == v for k, v in best.items() if k in run.data.params)
    for run in trials:  # hyperparameters are params, never metrics
        assert "lr" in run.data.params
        assert not set(run.data.params) & set(run.data.metrics)
        assert not [m for m in run.data.metrics if m.startswith("hp.")]


def test_the_sweep_run_is_the_comparison_page(sweep):
    import json

    client = sweep["client"]
    (run,) = _kind(sweep["runs"], "sweep")
    logged = json.loads(run.data.tags["mlflow.loggedArtifacts"])
    tables = {a["path"] for a in logged if a["type"] == "table"}
    assert {"tables/summary.json", "tables/results.json", "tables/win_matrix.json"} <= tables
    summary = json.loads(Path(client.download_artifacts(run.info.run_id, "tables/summary.json",
                                                        str(sweep["tmp"]))).read_text())  # fmt: skip
    assert sorted({row[summary["columns"].index("probe")] for row in summary["data"]}) == [
        "linear", "protobin"]  # fmt: skip
    report = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert "report/win_matrix.png" in report, report  # the artifact view previews PNGs
    metrics = run.data.metrics
    ranks = {k: v for k, v in metrics.items() if k.startswith("mean_rank.")}
    assert metrics["cells_done"] == 2.0 and ranks == {"mean_rank.eat_random-tiny": 1.0}


def test_runs_use_mlflows_own_fields(sweep):
    client, experiment = sweep["client"], sweep["experiment"]
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "quickstart" in experiment.tags["mlflow.note.content"]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent, check=False).stdout.strip()  # fmt: skip
    finals = [r for r in _kind(sweep["runs"], "trial") if r.data.tags["stage"] == "final"]
    assert finals
    for run in finals:
        tags = run.data.tags
        assert tags["mlflow.source.name"] == "orchestrator.sweep" and tags["mlflow.user"]
        if commit:
            assert tags["mlflow.source.git.commit"] == commit
        (used,) = client.get_run(run.info.run_id).inputs.dataset_inputs
        assert used.dataset.name == "synth_events"
        assert used.dataset.digest == tags["dataset_version"][:36]


def test_a_copied_output_folder_opens_with_its_artifacts(sweep):
    from mlflow.tracking import MlflowClient

    assert "python -m orchestrator.relocate" in sweep["stdout"]  # the run's last lines say so
    copy = sweep["tmp"] / "copied"
    shutil.copytree(sweep["out"], copy)
    gone = sweep["tmp"] / "gone"
    sweep["out"].rename(gone)  # the original is no longer where the store says
    try:
        client = MlflowClient(f"sqlite:///{copy / 'mlflow.db'}")
        (run,) = _kind(client.search_runs([sweep["experiment"].experiment_id]), "sweep")
        with pytest.raises(
            Exception, match="No such file|does not exist|not found|Failed to download"
        ):
            client.download_artifacts(run.info.run_id, "report/results.csv", str(copy / "x"))
        moved = subprocess.run(
            [sys.executable, "-m", "orchestrator.relocate", str(copy)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert moved.returncode == 0 and "rewritten" in moved.stdout, moved.stdout + moved.stderr
        local = client.download_artifacts(run.info.run_id, "report/results.csv", str(copy / "y"))
        assert Path(local).read_text().startswith("backbone") or "score" in Path(local).read_text()
        again = subprocess.run(
            [sys.executable, "-m", "orchestrator.relocate", str(copy)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert "nothing to change" in again.stdout
        bad = subprocess.run(
            [sys.executable, "-m", "orchestrator.relocate", str(sweep["tmp"] / "nowhere")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert bad.returncode == 2 and "mlflow.db" in bad.stderr
    finally:
        gone.rename(sweep["out"])


def test_each_cells_selected_probe_is_a_logged_model(sweep):
    import yaml

    client, experiment = sweep["client"], sweep["experiment"]
    models = client.search_logged_models([experiment.experiment_id])
    studies = {r.info.run_id: r for r in _kind(sweep["runs"], "study")}
    assert len(models) == len(studies) == 2
    for model in models:
        assert str(model.status).endswith("READY") and model.source_run_id in studies
        study = studies[model.source_run_id]
        assert model.params["probe"] == study.data.tags["probe"]
        outputs = client.get_run(study.info.run_id).outputs.model_outputs
        assert [o.model_id for o in outputs] == [model.model_id]
        folder = Path(client.download_artifacts(study.info.run_id, "probes", str(sweep["tmp"])))
        mlmodel = yaml.safe_load(
            Path(mlflow_artifact(model.artifact_location, "MLmodel")).read_text()
        )
        inputs = yaml.safe_load(mlmodel["signature"]["inputs"])
        assert inputs[0]["tensor-spec"]["shape"][-1] == int(model.params["embed_dim"])
        assert folder.exists()


def mlflow_artifact(location: str, name: str) -> str:
    import mlflow.artifacts

    return mlflow.artifacts.download_artifacts(artifact_uri=f"{location}/{name}")
