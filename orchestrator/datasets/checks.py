"""Metadata checks that need no audio decoding: every problem of a dataset folder, at once.

``check_dataset(spec, root)`` reads the metadata table (or the native reader's records) and
lists every problem with its file and row, instead of stopping at the first one or finding it
inside an extraction task: missing columns, unknown splits and labels, duplicate ids (also
across splits), missing audio files, empty labels on a multi-label set (the generated sets'
clips without events are the one exception: negatives by design), a multi-class row
without exactly one label, a ``classes.txt`` that disagrees with the class count, non-numeric
or inverted ``start``/``end``, and required splits with no rows. ``python -m orchestrator.data
NAME --check`` and the sweep's pre-flight call it before any task starts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import fsspec

from orchestrator.datasets.local import (
    COLUMNS,
    LABEL_SEP,
    SPLIT_ALIASES,
    find_metadata,
    join,
    read_classes,
    read_table,
)
from orchestrator.datasets.spec import DatasetError, DatasetSpec

MAX_PER_KIND = 1000  # a broken table of 1M rows lists this many of each kind, then counts


@dataclass(frozen=True)
class Problem:
    """One metadata problem: where (file, row as shown by a spreadsheet, column) and what."""

    file: str
    message: str
    row: int | None = None
    column: str | None = None
    kind: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f" row {self.row}"
        if self.column:
            where += f" column {self.column!r}"
        return f"{where}: {self.message}"


def check_dataset(spec: DatasetSpec, root: str | os.PathLike) -> list[Problem]:
    """Every metadata problem of ``spec`` under ``root`` (a data root or the dataset's folder).

    Generated datasets are generated first; a dataset that is not staged is one problem.
    """
    from orchestrator.datasets.api import dataset_root

    root = os.fspath(root)
    if find_metadata(root) is None:
        try:
            root = dataset_root(spec, root)
        except DatasetError as err:
            return [Problem(root, str(err), kind="not staged")]
    meta = find_metadata(root)
    if meta is None:
        return _check_native(spec, root)
    return _check_table(spec, root, meta)


def _check_native(spec: DatasetSpec, root: str) -> list[Problem]:
    from orchestrator.datasets.api import read_records

    try:
        by_split, classes = read_records(spec, root)
    except (DatasetError, KeyError, ValueError, OSError) as err:
        return [Problem(root, f"{type(err).__name__}: {err}", kind="unreadable metadata")]
    rows = [
        (f"record {r.id!r}", split, r.id, r.labels)
        for split, recs in by_split.items()
        for r in recs
    ]
    return _check_rows(spec, root, rows, classes, has_rows=True)


def _check_table(spec: DatasetSpec, root: str, meta: str) -> list[Problem]:
    problems: list[Problem] = []
    try:
        table = read_table(meta)
    except (OSError, ValueError, UnicodeDecodeError) as err:
        return [Problem(meta, f"unreadable table ({type(err).__name__}: {err})", kind="table")]
    header = list(table[0]) if table else []
    missing = [c for c in COLUMNS if table and c not in header]
    if missing:
        problems.append(
            Problem(
                meta,
                f"missing column(s) {missing}; the table has {header} and needs "
                f"{list(COLUMNS)} (optional: start, end, group).",
                row=1,
                kind="missing column",
            )
        )
    classes = read_classes(root)
    classes_file = join(root, "classes.txt")
    if classes is None:
        classes = spec.classes
        if not classes:
            problems.append(
                Problem(
                    classes_file,
                    f"missing; {spec.name!r} lists no classes in code, so the folder must "
                    "name them, one per line in index order.",
                    kind="classes",
                )
            )
    elif len(classes) != spec.num_classes:
        problems.append(
            Problem(
                classes_file,
                f"lists {len(classes)} classes but {spec.name!r} has {spec.num_classes}; stage "
                f"the data again (`python -m orchestrator.data {spec.name} --prepare`) or fix "
                "the file.",
                kind="classes",
            )
        )
    elif len(set(classes)) != len(classes):
        dup = sorted({c for c in classes if classes.count(c) > 1})
        problems.append(Problem(classes_file, f"duplicate class names {dup}.", kind="classes"))
    index = {c: i for i, c in enumerate(classes or ())}
    existing = _listing(root)
    rows = []
    for n, row in enumerate(table):
        line = n + 2
        rid = str(row.get("id", "") or "").strip()
        if "id" in header and not rid:
            problems.append(Problem(meta, "empty id.", line, "id", kind="empty id"))
        split = str(row.get("split", "") or "").strip()
        split = SPLIT_ALIASES.get(split.lower(), split)
        if "split" in header and split not in spec.all_splits:
            problems.append(
                Problem(
                    meta,
                    f"unknown split {split!r}; valid: {', '.join(spec.all_splits)} (aliases "
                    "validation/val/dev, eval/evaluation/testing, training are understood).",
                    line,
                    "split",
                    kind="unknown split",
                )
            )
        labels = (
            _labels(row.get("labels"), index, meta, line, problems)
            if index and "labels" in header
            else None
        )
        if "path" in header:
            _check_path(root, meta, line, row.get("path"), existing, problems)
        _check_window(meta, line, row, problems)
        rows.append((f"row {line}", split, rid, labels))
    problems += _check_rows(spec, meta, rows, tuple(index), has_rows=bool(table))
    return problems


def _labels(
    value: Any, index: dict[str, int], meta: str, line: int, problems: list[Problem]
) -> tuple[int, ...] | None:
    """Class indices of a label cell; unknown names and out-of-range indices are problems."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return ()
    items: Iterable[Any] = (
        value if isinstance(value, (list, tuple)) else str(value).split(LABEL_SEP)
    )
    out, bad = set(), []
    for item in items:
        item = item.strip() if isinstance(item, str) else item
        if isinstance(item, str) and item in index:
            out.add(index[item])
        elif isinstance(item, int) or (isinstance(item, str) and item.isdigit()):
            k = int(item)
            if 0 <= k < len(index):
                out.add(k)
            else:
                bad.append(f"index {k} outside 0..{len(index) - 1}")
        elif item != "":
            from probes.registry import did_you_mean

            bad.append(f"unknown label {item!r}.{did_you_mean(str(item), list(index))}")
    if bad:
        problems.append(
            Problem(
                meta,
                "; ".join(bad) + " Labels are class names from classes.txt joined by ';'.",
                line,
                "labels",
                kind="unknown label",
            )
        )
        return None
    return tuple(sorted(out))


def _listing(root: str) -> set[str] | None:
    """All file paths under a remote root (one listing, not a request per row); None if local."""
    fs, path = fsspec.core.url_to_fs(root)
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    if "file" in protocols:
        return None
    return {p.rstrip("/") for p in fs.find(path)}


def _check_path(
    root: str, meta: str, line: int, rel: Any, existing: set[str] | None, problems: list[Problem]
) -> None:
    rel = str(rel or "").strip()
    if not rel:
        problems.append(Problem(meta, "empty path.", line, "path", kind="missing file"))
        return
    url = join(root, rel)
    if existing is None:
        found = os.path.isfile(url.removeprefix("file://"))
    else:
        found = fsspec.core.url_to_fs(url)[1].rstrip("/") in existing
    if not found:
        problems.append(
            Problem(meta, f"audio file {rel!r} does not exist ({url}).", line, "path",
                    kind="missing file")
        )  # fmt: skip


def _check_window(meta: str, line: int, row: dict[str, Any], problems: list[Problem]) -> None:
    values = {}
    for col in ("start", "end"):
        v = row.get(col)
        if v is None or v == "":
            continue
        try:
            values[col] = float(v)
        except (TypeError, ValueError):
            problems.append(
                Problem(meta, f"{col}={v!r} is not a number of seconds.", line, col,
                        kind="bad window")
            )  # fmt: skip
            continue
        if not math.isfinite(values[col]) or values[col] < 0:
            problems.append(
                Problem(meta, f"{col}={v!r} must be >= 0 seconds.", line, col, kind="bad window")
            )
    if "start" in values and "end" in values and values["end"] <= values["start"]:
        problems.append(
            Problem(
                meta,
                f"end={values['end']:g} is not after start={values['start']:g}.",
                line,
                "end",
                kind="bad window",
            )
        )


def _check_rows(
    spec: DatasetSpec,
    file: str,
    rows: list[tuple[str, str, str, tuple[int, ...] | None]],
    classes: tuple[str, ...],
    has_rows: bool,
) -> list[Problem]:
    """Duplicate ids (also across splits), label counts per task, required splits present."""
    problems: list[Problem] = []
    first: dict[str, tuple[str, str]] = {}
    counts: dict[str, int] = {}
    for where, split, rid, labels in rows:
        line = int(where.split()[1]) if where.startswith("row ") else None
        name = file if line is not None else f"{file} {where}"
        if rid and rid in first:
            at, other = first[rid]
            across = (
                f" (in split {other!r}, here {split!r}: shared between splits)"
                if (other != split)
                else ""
            )
            problems.append(
                Problem(name, f"duplicate id {rid!r}, first at {at}{across}; ids must be unique.",
                        line, "id", kind="duplicate id")
            )  # fmt: skip
        elif rid:
            first[rid] = (where, split)
        counts[split] = counts.get(split, 0) + 1
        if labels is None:
            continue
        if spec.task == "multiclass" and len(labels) != 1:
            problems.append(
                Problem(
                    name,
                    f"{len(labels)} labels on a multi-class dataset; each row needs exactly "
                    f"one class{': ' + ', '.join(classes[i] for i in labels) if labels else ''}.",
                    line,
                    "labels",
                    kind="label count",
                )
            )
        elif spec.task == "multilabel" and not labels and spec.source != "generated":
            problems.append(
                Problem(
                    name,
                    "no labels on a multi-label dataset; give at least one class (names joined "
                    "by ';') or drop the row.",
                    line,
                    "labels",
                    kind="label count",
                )
            )
    if has_rows:
        for split in ("train", "test"):
            if not counts.get(split):
                problems.append(
                    Problem(
                        file,
                        f"no rows for the {split!r} split (found: "
                        f"{', '.join(sorted(s for s in counts if s)) or 'none'}).",
                        kind="empty split",
                    )
                )
    else:
        problems.append(Problem(file, "the table has no rows.", kind="empty split"))
    return _cap(problems)


def _cap(problems: list[Problem]) -> list[Problem]:
    kept: list[Problem] = []
    seen: dict[str, int] = {}
    for p in problems:
        seen[p.kind] = seen.get(p.kind, 0) + 1
        if seen[p.kind] <= MAX_PER_KIND:
            kept.append(p)
    for kind, n in seen.items():
        if n > MAX_PER_KIND:
            kept.append(Problem(problems[0].file, f"... and {n - MAX_PER_KIND} more {kind!r}."))
    return kept


def format_problems(spec: DatasetSpec, problems: list[Problem]) -> str:
    head = f"{spec.name}: {len(problems)} metadata problem(s):"
    return "\n".join([head, *(f"  {p}" for p in problems)])
