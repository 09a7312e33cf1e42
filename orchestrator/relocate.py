"""``python -m orchestrator.relocate OUT``: make a copied or renamed output folder's MLflow
store serve its artifacts again.

A sweep with the default local store keeps ``mlflow.db`` and ``mlartifacts/`` in its output
folder, but MLflow records each experiment's and run's artifact location as an absolute
``file://`` URI. After the folder is copied to a laptop or renamed, ``mlflow ui`` finds every
run and no artifact. This rewrites those URIs (experiments, runs, logged models) from the old
folder to the one the store is in now; nothing else changes, and running it twice is a no-op.
A sweep re-run in a moved folder does the same before it logs anything.
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import sys
from pathlib import Path

log = logging.getLogger(__name__)

DB = "mlflow.db"
ARTIFACTS = "mlartifacts"
# (table, column) of the artifact locations MLflow's sql store keeps
COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
)


class RelocateError(ValueError):
    """The folder has no local MLflow store to relocate."""


def relocate(out_dir: str | Path) -> int:
    """Point every artifact URI of ``out_dir/mlflow.db`` that names another folder's
    ``mlartifacts`` at ``out_dir/mlartifacts``; return how many rows changed."""
    out = Path(out_dir).resolve()
    db = out / DB
    if not db.is_file():
        raise RelocateError(
            f"{db} does not exist: give the output folder of a sweep that used the default "
            "local MLflow store (the folder holding mlflow.db and mlartifacts/)"
        )
    new = (out / ARTIFACTS).as_uri()
    changed = 0
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        roots = {
            row[0]
            for row in conn.execute("select artifact_location from experiments")
            if row[0] and row[0].startswith("file://") and row[0].rstrip("/").endswith(ARTIFACTS)
        }
        for old in sorted(roots - {new}):
            old = old.rstrip("/")
            for table, column in COLUMNS:
                if table not in tables:
                    continue
                cur = conn.execute(
                    f"update {table} set {column} = ? || substr({column}, ?) "
                    f"where {column} = ? or substr({column}, 1, ?) = ?",
                    (new, len(old) + 1, old, len(old) + 1, old + "/"),
                )
                changed += cur.rowcount
            log.info("MLflow store %s: artifacts moved from %s to %s", db, old, new)
    return changed


def relocate_hint(out_dir: str | Path) -> str:
    """The line a run prints: how to open a moved copy of this folder."""
    return f"moved or copied {out_dir}? then run: python -m orchestrator.relocate <new folder>"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator.relocate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("out", type=Path, help="the moved output folder (holds mlflow.db)")
    args = parser.parse_args(argv)
    try:
        changed = relocate(args.out)
    except (RelocateError, sqlite3.Error) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    print(f"{changed} artifact locations now under {out / ARTIFACTS}")
    print(f"MLflow UI: mlflow ui --backend-store-uri sqlite:///{out / DB}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
