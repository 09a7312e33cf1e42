"""``--mlflow``: the same report from a real sqlite MLflow store as from the results file."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from orchestrator.report import ReportError, main, write_report, write_report_from_mlflow
from orchestrator.reporting.mlflow_source import load_mlflow
from tests.orchestrator.test_report_fixtures import cell, table

EXPERIMENT = "quickstart"
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


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A sqlite MLflow store holding the final runs of ``results()`` the way the sweep logs them."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment(EXPERIMENT)

    def log(
        row: dict, stage: str = "final", score: float | None = None, start: int = 0, **extra: str
    ) -> None:
        tags = {k: str(row[k]) for k in ("backbone", "dataset", "probe", "seed", "dataset_version")}
        run = client.create_run(
            exp, start_time=1000 + start, tags={**tags, "stage": stage, **extra}
        )
        if score is not None:
            client.log_metric(run.info.run_id, "test_score", score)
        client.set_terminated(run.info.run_id)

    rows = list(results().iter_rows(named=True))
    for row in rows:
        log(row, score=row["score"], start=1)
    log(rows[0], stage="search", score=0.99)  # a search trial: not a result
    log(rows[1], score=0.01, start=0)  # an older duplicate of a resumed seed: superseded
    log({**rows[0], "probe": "ep"})  # final run without test_score: a missing cell
    # a newer final run of a top-k configuration the sweep did not select: never a result
    log(rows[2], score=0.99, start=5, selected="false")
    return uri


def test_load_mlflow_reads_final_runs(store: str) -> None:
    frame, unscored = load_mlflow(EXPERIMENT, store)
    assert frame.height == results().height
    assert unscored.rows() == [("eat@random-tiny", "synth_events", "ep")]
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


def test_mixed_dataset_versions_refused(store: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=store)
    exp = client.create_experiment("versions")
    for version, seed in (("1", 0), ("2", 1)):
        tags = {
            "backbone": "eat",
            "dataset": "d",
            "probe": "linear",
            "seed": str(seed),
            "dataset_version": version,
            "stage": "final",
        }
        run = client.create_run(exp, tags=tags)
        client.log_metric(run.info.run_id, "test_score", 0.5)
    with pytest.raises(ReportError, match="refusing to mix dataset versions"):
        write_report_from_mlflow("versions", tmp_path / "o", tracking_uri=store)
