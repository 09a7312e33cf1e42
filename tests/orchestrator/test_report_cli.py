"""The report's files, API and CLI: formats, missing cells, and refusals of bad input."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest

from orchestrator.report import ReportError, main, write_report
from tests.orchestrator.test_report_fixtures import cell, table


def small() -> pl.DataFrame:
    """Two encoders x one dataset x three probes; protobin on beats missing."""
    return table(
        cell("eat", "as20k", "linear", 0.17, 0.01),
        cell("eat", "as20k", "mhca", 0.26, 0.01),
        cell("eat", "as20k", "protobin", 0.31, 0.01),
        cell("beats", "as20k", "linear", 0.25, 0.01),
        cell("beats", "as20k", "mhca", 0.25, 0.02),
    )


def test_write_report_files_and_contents(tmp_path: Path) -> None:
    paths = write_report(small(), tmp_path)
    for key in ("summary", "win_matrix", "win_matrix_png", "report"):
        assert paths[key].is_file() and paths[key].stat().st_size > 0, key
    assert paths["win_matrix_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = pl.read_csv(paths["summary"])
    assert {"backbone", "dataset", "probe", "mean", "sd", "n"} <= set(summary.columns)
    row = summary.filter((pl.col("backbone") == "eat") & (pl.col("probe") == "mhca")).row(
        0, named=True
    )
    assert math.isclose(row["mean"], 0.26) and math.isclose(row["sd"], 0.01) and row["n"] == 3
    gap = summary.filter((pl.col("backbone") == "beats") & (pl.col("probe") == "protobin"))
    assert gap.get_column("n").to_list() == [0] and gap.get_column("mean").is_null().all()
    wm = pl.read_csv(paths["win_matrix"])
    assert wm.columns == ["probe", "linear", "mhca", "protobin"]
    assert wm.get_column("probe").to_list() == wm.columns[1:]
    assert all(wm.schema[c].is_integer() for c in wm.columns[1:])
    # eat: mhca, protobin beat linear; protobin beats mhca. beats: mhca = linear (tie).
    assert wm.rows() == [("linear", 0, 0, 0), ("mhca", 1, 0, 0), ("protobin", 1, 1, 0)]
    text = paths["report"].read_text()
    assert "26.00 ± 1.00" in text and "—" in text
    assert "| protobin | 1 | 1 | 0 |" in text


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_cli_reads_csv_and_parquet(tmp_path: Path, suffix: str, capsys) -> None:
    src = tmp_path / f"results{suffix}"
    small().write_csv(src) if suffix == ".csv" else small().write_parquet(src)
    out = tmp_path / "out"
    assert main(["--results", str(src), "--out", str(out), "--tie-rule", "max"]) == 0
    assert (out / "win_matrix.csv").is_file() and "report" in capsys.readouterr().out
    assert "max rule" in (out / "report.md").read_text()


def _bad(frame: pl.DataFrame, tmp_path: Path, capsys, *args: str) -> str:
    src = tmp_path / "bad.parquet"
    frame.write_parquet(src)
    assert main(["--results", str(src), "--out", str(tmp_path / "o"), *args]) == 2
    return capsys.readouterr().err


def test_cli_refuses_unknown_rule(tmp_path: Path, capsys) -> None:
    err = _bad(small(), tmp_path, capsys, "--tie-rule", "oponent")
    assert "'oponent'" in err and "opponent, own, max, pooled" in err


def test_cli_refuses_missing_column(tmp_path: Path, capsys) -> None:
    err = _bad(small().drop("seed"), tmp_path, capsys)
    assert "['seed']" in err and "backbone, dataset, probe, seed, score" in err


def test_cli_refuses_empty_table(tmp_path: Path, capsys) -> None:
    assert "empty" in _bad(small().head(0), tmp_path, capsys)


def test_cli_refuses_nan_score(tmp_path: Path, capsys) -> None:
    frame = small().with_columns(
        pl.when(pl.col("probe") == "mhca")
        .then(float("nan"))
        .otherwise(pl.col("score"))
        .alias("score")
    )
    err = _bad(frame, tmp_path, capsys)
    assert "NaN" in err and "'mhca'" in err


def test_cli_refuses_missing_file_and_bad_suffix(tmp_path: Path, capsys) -> None:
    assert main(["--results", str(tmp_path / "nope.csv"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "r.xlsx").write_text("x")
    assert main(["--results", str(tmp_path / "r.xlsx"), "--out", str(tmp_path)]) == 2
    assert "'.xlsx'" in capsys.readouterr().err


def test_refuses_duplicate_seed_rows() -> None:
    frame = pl.concat([small(), small().head(1)])
    with pytest.raises(ReportError, match="repeat a"):
        write_report(frame, "unused")


def test_refuses_mixed_dataset_versions(tmp_path: Path) -> None:
    frame = table(
        cell("eat", "as20k", "linear", 0.1, 0.01, dataset_version="v1"),
        cell("eat", "as20k", "mhca", 0.2, 0.01, dataset_version="v2"),
    )
    with pytest.raises(ReportError, match=r"dataset 'as20k' has versions \['v1', 'v2'\]"):
        write_report(frame, tmp_path)


def test_non_final_stage_rows_are_ignored(tmp_path: Path) -> None:
    frame = small().with_columns(pl.lit("final").alias("stage"))
    extra = frame.head(1).with_columns(pl.lit("search").alias("stage"), pl.lit(0.99).alias("score"))
    paths = write_report(pl.concat([frame, extra]), tmp_path)
    summary = pl.read_csv(paths["summary"])
    assert summary.get_column("n").max() == 3


def test_cli_tracking_uri_needs_mlflow(tmp_path: Path, capsys) -> None:
    src = tmp_path / "r.csv"
    small().write_csv(src)
    assert (
        main(["--results", str(src), "--out", str(tmp_path), "--tracking-uri", "sqlite:///x"]) == 2
    )
    assert "--mlflow" in capsys.readouterr().err


def test_single_probe_single_seed_still_reports(tmp_path: Path) -> None:
    frame = pl.DataFrame(
        {"backbone": ["eat"], "dataset": ["d"], "probe": ["linear"], "seed": [0], "score": [0.5]}
    )
    paths = write_report(frame, tmp_path)
    assert pl.read_csv(paths["win_matrix"]).rows() == [("linear", 0)]
    assert "single seed" in paths["report"].read_text()
    assert paths["win_matrix_png"].stat().st_size > 0


def test_options_tie_rule_used_unless_overridden(tmp_path: Path) -> None:
    from orchestrator.report import ReportOptions

    paths = write_report(small(), tmp_path / "a", options=ReportOptions(tie_rule="own"))
    assert "own rule" in paths["report"].read_text()
    paths = write_report(small(), tmp_path / "b", "max", options=ReportOptions(tie_rule="own"))
    assert "max rule" in paths["report"].read_text()
