"""Point a copied, moved or renamed output folder's MLflow store at its own artifacts.

A local sweep keeps its MLflow store beside its results (``<out>/mlflow.db``, artifacts under
``<out>/mlartifacts``), and MLflow records artifact locations as absolute ``file://`` URIs. A
folder copied to a laptop or renamed would open in ``mlflow ui`` with every artifact missing;
``python -m orchestrator.relocate <out>`` rewrites those URIs (the experiments', runs' and
logged models' roots under the old ``.../mlartifacts``) to the folder's own ``mlartifacts``.
Run it after every move; it changes nothing when the folder did not move.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path

DB, ARTIFACTS = "mlflow.db", "mlartifacts"
# (table, column) of every artifact location MLflow stores, where the schema has them
COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"))
OPTIONAL = (("logged_models", "artifact_location"),)


def relocate(folder: str | Path) -> dict[str, int]:
    """Rewrite the store's artifact roots to ``folder/mlartifacts``; rows changed per table."""
    folder = Path(folder).expanduser().resolve()
    db = folder / DB
    if not db.is_file():
        raise FileNotFoundError(
            f"{db} does not exist: pass the output folder of a local sweep (the one holding "
            f"{DB} and {ARTIFACTS}/)"
        )
    new = (folder / ARTIFACTS).as_uri()
    changed: dict[str, int] = {}
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        roots = {
            loc
            for (loc,) in con.execute("select artifact_location from experiments")
            if loc and loc.rstrip("/").endswith(f"/{ARTIFACTS}") and loc.rstrip("/") != new
        }
        for table, column in COLUMNS + OPTIONAL:
            if table not in tables:
                continue
            for old in sorted(roots):
                old = old.rstrip("/")
                cursor = con.execute(
                    f"update {table} set {column} = ? || substr({column}, ?) "
                    f"where {column} = ? or {column} like ? escape '\\'",
                    (new, len(old) + 1, old, _like_prefix(old + "/")),
                )
                changed[table] = changed.get(table, 0) + cursor.rowcount
    return changed


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.relocate", description=__doc__)
    parser.add_argument("folder", help="a sweep's output folder (holding mlflow.db)")
    args = parser.parse_args(argv)
    try:
        changed = relocate(args.folder)
    except (FileNotFoundError, sqlite3.DatabaseError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    folder = Path(args.folder).expanduser().resolve()
    if not any(changed.values()):
        print(f"{folder}: artifacts already point at {folder / ARTIFACTS}; nothing to change")
    else:
        done = ", ".join(f"{n} {table}" for table, n in changed.items() if n)
        print(f"{folder}: artifact locations rewritten ({done}) to {folder / ARTIFACTS}")
    print(f"MLflow UI: mlflow ui --backend-store-uri sqlite:///{folder / DB}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
