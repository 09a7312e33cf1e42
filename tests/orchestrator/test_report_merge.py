"""Reports over several sweeps: inputs merged by key, conflicts and mixed protocols refused."""

from __future__ import annotations

import polars as pl

from orchestrator.report import main
from tests.orchestrator.test_report_fixtures import cell, table


def _run(tmp_path, *inputs: str, extra: tuple[str, ...] = ()) -> int:
    args = [a for i in inputs for a in ("--results", i)]
    return main([*args, "--out", str(tmp_path / "r"), "--bootstrap", "0", *extra])


def _baseline(**extra) -> pl.DataFrame:
    return table(
        *(
            cell(b, d, p, m, 0.01, **extra)
            for b in ("eat", "beats")
            for d, m in (("as20k", 0.2), ("esc50", 0.8))
            for p in ("linear", "mhca")
        )
    )


def test_two_results_merge_into_one_report_with_wins_and_ranks(tmp_path):
    base, new = tmp_path / "base", tmp_path / "new.csv"
    base.mkdir()
    _baseline(epochs=4, code_digest="aaa").write_parquet(base / "results.parquet")
    table(
        cell("myenc", "as20k", "linear", 0.1, 0.01, epochs=4, code_digest="bbb"),
        cell("myenc", "as20k", "mhca", 0.3, 0.01, epochs=4, code_digest="bbb"),
    ).write_csv(new)
    assert _run(tmp_path, str(base), str(new)) == 0
    summary = pl.read_csv(tmp_path / "r" / "summary.csv")
    assert sorted(summary.get_column("backbone").unique()) == ["beats", "eat", "myenc"]
    # myenc's cell counts in the win matrix: mhca beats linear on 5 (encoder, dataset) cells
    wins = pl.read_csv(tmp_path / "r" / "win_matrix.csv")
    assert wins.filter(pl.col("probe") == "mhca").get_column("linear").item() == 1
    report = (tmp_path / "r" / "report.md").read_text()
    assert "Merged from 2 inputs" in report
    assert "**Rows from different code versions are merged**: code_digest ('aaa' in" in report
    assert f"'bbb' in {new}" in report


def test_same_run_twice_is_kept_once_and_a_conflicting_row_is_refused(tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _baseline().write_csv(a)
    assert _run(tmp_path, str(a), str(a)) == 0  # the same rows twice: one run read twice
    assert pl.read_csv(tmp_path / "r" / "summary.csv").get_column("n").max() == 3
    changed = _baseline().with_columns(
        pl.when((pl.col("backbone") == "eat") & (pl.col("seed") == 1))
        .then(pl.col("score") + 0.05)
        .otherwise(pl.col("score"))
        .alias("score")
    )
    changed.write_csv(b)
    capsys.readouterr()
    assert _run(tmp_path, str(a), str(b)) == 2
    err = capsys.readouterr().err
    assert "appear in two inputs with different scores" in err
    assert "eat/as20k/linear/1" in err and str(a) in err and str(b) in err


def test_mixed_protocol_is_refused_unless_allowed_and_then_stated(tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    _baseline(epochs=4, dataset_version="v1").write_csv(a)
    table(cell("myenc", "as20k", "linear", 0.1, 0.01, epochs=8, dataset_version="v2")).write_csv(b)
    assert _run(tmp_path, str(a), str(b)) == 2
    err = capsys.readouterr().err
    assert "refusing to merge rows from different protocols" in err
    assert f"epochs (4 in {a}; 8 in {b})" in err
    assert f"dataset 'as20k': 'v1' in {a}; 'v2' in {b}" in err
    assert "--allow-mixed" in err
    assert _run(tmp_path, str(a), str(b), extra=("--allow-mixed",)) == 0
    report = (tmp_path / "r" / "report.md").read_text()
    assert "**Mixed protocols (--allow-mixed)**: epochs (4 in" in report


def test_a_folder_without_results_is_refused_by_name(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _run(tmp_path, str(empty)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(empty) in err[0] and "results.csv" in err[0]
