"""``--mlflow``: the same report from a real sqlite MLflow store as from the results file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from orchestrator.report import ReportError, main, write_report, write_report_from_mlflow
from orchestrator.reporting.mlflow_source import load_mlflow
from orchestrator.tracking import SweepTracker
from tests.orchestrator.test_report_fixtures import cell, table

EXPERIMENT = "quickstart"
SWEEP = "quickstart-aaaa"
# mlflow's sqlite store triggers a SQLAlchemy deprecation warning that is not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def results() -> pl.DataFrame:
    return table(
        cell("eat@random-tiny", "synth_events", "linear", 0.2, 0.01, dataset_version="1"),
        cell("eat@random-tiny", "synth_events", "mhca", 0.3, 0.01, dataset_version="1"),
        cell("eat@random-tiny", "synth_events", "protobin", 0.4, 0.01, dataset_version="1"),
        cell("beats@random-tiny", "synth_events", "linear", 0.25, 0.01, dataset_version="1"),
        cell("beats@random-tiny", "synth_events", "mhca", 0.24, 0.02, dataset_version="1"),
    )


def log_sweep(
    uri: str, sweep_id: str, rows: list[dict], art: Path, experiment: str = EXPERIMENT
) -> SweepTracker:
    """Log ``rows`` (final seed results) through SweepTracker the way the sweep does: a study
    per cell, its selected config 0 and a losing config 1 per seed, a search trial."""
    tracker = SweepTracker(
        uri,
        experiment,
        sweep_id=sweep_id,
        sweep_name="quickstart",
        out_dir=f"/out/{sweep_id}",
        config={"train": {"epochs": 3, "batch_size": 8}},
        artifact_location=art.as_uri(),
    )
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        cells.setdefault((row["backbone"], row["dataset"], row["probe"]), []).append(row)
    for (backbone, dataset, probe), seeds in cells.items():
        study = f"{backbone}-{dataset}-{probe}"
        tags = {"backbone": backbone, "dataset": dataset, "probe": probe}
        tags["dataset_version"] = str(seeds[0].get("dataset_version", "1"))
        tracker.study_run(study, tags)
        tracker.trial_started(study, f"{study}/search/0", "search", {"lr": 0.1}, tags)
        tracker.trial_result(f"{study}/search/0", {"test_score": 99.0}, 1)  # never a result
        tracker.trial_finished(f"{study}/search/0", "FINISHED")
        chosen = []
        for config in (0, 1):
            for row in seeds:
                key = f"{study}/final/{config}-{row['seed']}"
                seed_tags = {**tags, "seed": str(row["seed"])}
                seed_tags["dataset_version"] = str(row.get("dataset_version", "1"))
                tracker.trial_started(study, key, "final", {"lr": 0.01}, seed_tags)
                score = row["score"] if config == 0 else 0.99  # config 1: not selected
                tracker.trial_result(key, {"test_score": score}, 3)
                tracker.trial_finished(key, "FINISHED")
                chosen += [key] if config == 0 else []
        tracker.study_finished(study, "FINISHED", selected=chosen)
    return tracker


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A sqlite MLflow store holding ``results()`` as the sweep logs them, plus runs that are
    no result: a failed study (a missing cell), an unfinished study, an older duplicate."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    rows = list(results().iter_rows(named=True))
    tracker = log_sweep(uri, SWEEP, rows, root / "art")
    ep = {"backbone": "eat@random-tiny", "dataset": "synth_events", "probe": "ep"}
    tracker.study_run("ep-study", ep)
    tracker.study_finished("ep-study", "FAILED", tags={"error": "every search trial failed"})
    # a study whose final runs are tagged but which did not finish: not counted
    mhca = {**ep, "probe": "protobin", "backbone": "beats@random-tiny", "seed": "0"}
    tracker.study_run("running", mhca)
    tracker.trial_started("running", "running/final/0-0", "final", {}, mhca)
    tracker.trial_result("running/final/0-0", {"test_score": 1.0}, 1)
    tracker.trial_finished("running/final/0-0", "FINISHED")
    tracker.tag_trial("running/final/0-0", {"selected": "true"})
    tracker.close()
    # an older duplicate of a resumed seed (written by hand): the newer run wins
    client = MlflowClient(tracking_uri=uri)
    old = next(
        r
        for r in client.search_runs([tracker.experiment_id])
        if r.data.tags.get("trial_key", "").endswith("mhca/final/0-1")
        and r.data.tags["backbone"].startswith("eat")
    )
    dup = client.create_run(tracker.experiment_id, start_time=1000, tags=old.data.tags)
    client.log_metric(dup.info.run_id, "test_score", 0.01)
    client.set_terminated(dup.info.run_id)
    return uri


def test_load_mlflow_reads_final_runs(store: str) -> None:
    frame, unscored = load_mlflow(EXPERIMENT, store)
    assert frame.height == results().height
    assert sorted(unscored.rows()) == [  # the unfinished study, the failed one
        ("beats@random-tiny", "synth_events", "protobin"),
        ("eat@random-tiny", "synth_events", "ep"),
    ]
    assert set(frame.get_column("dataset_version").unique()) == {"1"}
    mine = frame.sort(["backbone", "probe", "seed"]).select("backbone", "probe", "seed", "score")
    theirs = results().sort(["backbone", "probe", "seed"]).select(mine.columns)
    assert mine.with_columns(pl.col("seed").cast(pl.Int64)).equals(theirs)


def test_mlflow_report_equals_file_report(store: str, tmp_path: Path) -> None:
    from_mlflow = write_report_from_mlflow(EXPERIMENT, tmp_path / "m", tracking_uri=store)
    from_file = write_report(results(), tmp_path / "f")
    for stem in ("win_matrix", "tie_rule_sensitivity", "encoder_ranks"):
        mine, theirs = pl.read_csv(from_mlflow[stem]), pl.read_csv(from_file[stem])
        if stem == "win_matrix":  # the unscored ep run is a probe with no wins, else identical
            assert mine.get_column("ep").sum() == 0 and mine.row(-2)[1:] == (0, 0, 0, 0)
            mine = mine.filter(pl.col("probe") != "ep").drop("ep")
        if stem == "tie_rule_sensitivity":  # 4 probes (with ep) vs 3: a different cell total
            mine, theirs = mine.drop("cells_total"), theirs.drop("cells_total")
        assert mine.equals(theirs), stem
    summary = pl.read_csv(from_mlflow["summary"])
    assert summary.filter(pl.col("probe") == "protobin").get_column("n").sort().to_list() == [0, 3]
    assert summary.filter(pl.col("probe") == "ep").get_column("n").to_list() == [0, 0]
    assert from_mlflow["mlflow_results"].is_file() and from_mlflow["win_matrix_png"].is_file()
    assert "MLflow experiment `quickstart`" in from_mlflow["report"].read_text()


def test_cli_mlflow_and_unknown_experiment(store: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    assert main(["--mlflow", EXPERIMENT, "--tracking-uri", store, "--out", str(out)]) == 0
    assert (out / "win_matrix.png").is_file()
    assert main(["--mlflow", "quickstrat", "--tracking-uri", store, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "'quickstrat' not found" in err and "Did you mean 'quickstart'?" in err


def test_mixed_dataset_versions_refused(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rows = cell("eat", "d", "linear", 0.5, 0.1)
    for row, version in zip(rows, ("1", "2", "1"), strict=True):
        row["dataset_version"] = version
    log_sweep(uri, "v-1", rows, tmp_path / "art", experiment="versions").close()
    with pytest.raises(ReportError, match="refusing to mix dataset versions"):
        write_report_from_mlflow("versions", tmp_path / "o", tracking_uri=uri)


def test_two_sweeps_are_never_merged(tmp_path: Path, capsys) -> None:
    """Two sweeps (e.g. 5 and 3 epochs) in one experiment: refused, or one picked by id."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    five = table(cell("eat", "d", "linear", 30.0, 1.0), cell("eat", "d", "mhca", 40.0, 1.0))
    three = table(cell("eat", "d", "linear", 20.0, 1.0), cell("eat", "d", "mhca", 10.0, 1.0))
    log_sweep(uri, "qs-five", list(five.iter_rows(named=True)), tmp_path / "a").close()
    log_sweep(uri, "qs-three", list(three.iter_rows(named=True)), tmp_path / "a").close()
    out = str(tmp_path / "r")
    assert main(["--mlflow", EXPERIMENT, "--tracking-uri", uri, "--out", out]) == 2
    err = capsys.readouterr().err
    assert "refusing to merge" in err and "--sweep-id" in err
    assert "qs-five: quickstart, started 20" in err and "qs-three: quickstart" in err
    assert "out /out/qs-three; 6 results" in err
    for sweep_id, expected in (("qs-five", five), ("qs-three", three)):
        frame, _ = load_mlflow(EXPERIMENT, uri, sweep_id)
        got = frame.sort("probe", "seed").select("probe", "seed", "score")
        want = expected.sort("probe", "seed").select(got.columns)
        assert got.with_columns(pl.col("seed").cast(pl.Int64)).equals(want), sweep_id
    args = ["--mlflow", EXPERIMENT, "--tracking-uri", uri, "--out", out, "--sweep-id", "qs-3"]
    assert main(args) == 2
    assert "sweep id 'qs-3' not found" in capsys.readouterr().err
    assert main([*args[:-1], "qs-three"]) == 0
    assert "sweep `qs-three`" in (tmp_path / "r" / "report.md").read_text()


def test_results_mlflow_input_merges_with_a_file(store: str, tmp_path: Path) -> None:
    """``--results mlflow:EXPERIMENT`` beside a results file of another encoder: one report."""
    other = (
        results()
        .filter(pl.col("backbone") == "eat@random-tiny")
        .with_columns(pl.lit("myenc").alias("backbone"))
    )
    other.write_csv(tmp_path / "myenc.csv")
    args = ["--results", f"mlflow:{EXPERIMENT}", "--results", str(tmp_path / "myenc.csv")]
    assert main([*args, "--tracking-uri", store, "--out", str(tmp_path / "r")]) == 0
    summary = pl.read_csv(tmp_path / "r" / "summary.csv")
    assert "myenc" in summary.get_column("backbone").to_list()
    assert set(results().get_column("backbone")) <= set(summary.get_column("backbone"))
    assert "Merged from 2 inputs" in (tmp_path / "r" / "report.md").read_text()


def test_an_mlflow_input_carries_its_sweeps_protocol(store: str, tmp_path: Path, capsys) -> None:
    """A sweep read from MLflow keeps its protocol (from its sweep run's config params): merged
    with a file made under other epochs it is refused, naming both inputs, unless allowed."""
    frame, _ = load_mlflow(EXPERIMENT, store, SWEEP)
    assert set(frame["epochs"].to_list()) == {3}
    other = (
        results()
        .filter(pl.col("backbone") == "eat@random-tiny")
        .with_columns(pl.lit("myenc").alias("backbone"), pl.lit(30).alias("epochs"))
    )
    other.write_csv(tmp_path / "myenc.csv")
    args = ["--results", f"mlflow:{EXPERIMENT}", "--results", str(tmp_path / "myenc.csv"),
            "--tracking-uri", store]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "epochs" in err and f"mlflow:{EXPERIMENT}" in err and "myenc.csv" in err
    assert main([*args, "--allow-mixed", "--out", str(tmp_path / "ok")]) == 0
