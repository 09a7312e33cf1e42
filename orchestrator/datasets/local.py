"""The canonical on-disk format: audio files plus one metadata table, on any fsspec filesystem.

A dataset folder (local path or ``s3://bucket/prefix``) holds

- ``metadata.csv`` or ``metadata.parquet``: one row per clip with columns ``id``, ``split``,
  ``path`` (relative to the folder), ``labels`` (class names joined by ``;``, empty for none)
  and optionally ``start``/``end`` (seconds, for a window of a longer file) and ``group``
  (clips sharing a group are never split between train and valid);
- ``classes.txt``: the class vocabulary, one name per line, in index order (optional when the
  registered spec lists its classes);
- the audio files (any format soundfile reads: WAV, FLAC, OGG, MP3 with libsndfile >= 1.1).

The generated datasets, ``--prepare`` and a user's own data all produce this layout, so the
quickstart exercises the same reader as real data.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import fsspec

from orchestrator.datasets.spec import DatasetError, DatasetSpec
from orchestrator.datasets.splits import Record

log = logging.getLogger(__name__)

METADATA_FILES = ("metadata.csv", "metadata.parquet")
COLUMNS = ("id", "split", "path", "labels")
LABEL_SEP = ";"


# Names a metadata table may use for the canonical splits.
SPLIT_ALIASES = {
    "validation": "valid", "val": "valid", "dev": "valid",
    "eval": "test", "evaluation": "test", "testing": "test", "training": "train",
}  # fmt: skip


def join(root: str, rel: str) -> str:
    return rel if "://" in rel or rel.startswith("/") else f"{root.rstrip('/')}/{rel}"


def find_metadata(root: str) -> str | None:
    """Return the metadata table's URL under ``root``, or None when there is none."""
    fs, path = fsspec.core.url_to_fs(root)
    for name in METADATA_FILES:
        if fs.exists(f"{path.rstrip('/')}/{name}"):
            return join(root, name)
    return None


def read_table(url: str) -> list[dict[str, Any]]:
    """Rows of a CSV or parquet table as dicts (all values kept as read)."""
    if url.endswith(".parquet"):
        import pyarrow.parquet as pq

        with fsspec.open(url, "rb") as f:
            return pq.read_table(f).to_pylist()
    with fsspec.open(url, "rt", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def read_classes(root: str) -> tuple[str, ...] | None:
    fs, path = fsspec.core.url_to_fs(root)
    p = f"{path.rstrip('/')}/classes.txt"
    if not fs.exists(p):
        return None
    with fs.open(p, "rt", encoding="utf-8") as f:
        return tuple(line.rstrip("\n") for line in f if line.strip())


def _opener(url: str) -> Any:
    def load() -> Any:
        if "://" not in url:
            return url
        with fsspec.open(url, "rb") as f:
            return f.read()

    return load


def parse_labels(value: Any, index: dict[str, int], where: str) -> tuple[int, ...]:
    """``"dog;cat"`` / ``[0, 3]`` / ``"3"`` -> sorted class indices; unknown names fail."""
    if value is None or value == "":
        return ()
    items: Iterable[Any] = (
        value if isinstance(value, (list, tuple)) else str(value).split(LABEL_SEP)
    )
    out = set()
    for item in items:
        item = item.strip() if isinstance(item, str) else item
        if isinstance(item, str) and item in index:
            out.add(index[item])
        elif isinstance(item, int) or (isinstance(item, str) and item.isdigit()):
            k = int(item)
            if not 0 <= k < len(index):
                raise DatasetError(f"{where}: label index {k} outside 0..{len(index) - 1}.")
            out.add(k)
        elif item != "":
            from probes.registry import did_you_mean

            raise DatasetError(
                f"{where}: unknown label {item!r}.{did_you_mean(str(item), list(index))} "
                f"Valid labels: {', '.join(list(index)[:30])}{' ...' if len(index) > 30 else ''}."
            )
    return tuple(sorted(out))


def read_local(spec: DatasetSpec, root: str) -> tuple[dict[str, list[Record]], tuple[str, ...]]:
    """Records of every split in the folder ``root`` (one read of the table), and the classes."""
    meta = find_metadata(root)
    if meta is None:
        raise DatasetError(
            f"{root}: no {' or '.join(METADATA_FILES)}; a local dataset folder needs one "
            f"(columns {', '.join(COLUMNS)})."
        )
    rows = read_table(meta)
    if rows:
        missing = [c for c in COLUMNS if c not in rows[0]]
        if missing:
            raise DatasetError(f"{meta}: missing column(s) {missing}; need {list(COLUMNS)}.")
    classes = read_classes(root) or spec.classes
    if not classes:
        raise DatasetError(f"{root}: no classes.txt and spec {spec.name!r} lists no classes.")
    if len(classes) != spec.num_classes:
        raise DatasetError(
            f"{root}/classes.txt lists {len(classes)} classes, {spec.name!r} has "
            f"{spec.num_classes}; stage the data again with "
            f"`python -m orchestrator.data {spec.name} --prepare`."
        )
    if spec.classes and tuple(classes) != tuple(spec.classes):
        log.warning(
            "%s/classes.txt names differ from the registered classes of %s; using the folder's",
            root,
            spec.name,
        )
    index = {c: i for i, c in enumerate(classes)}
    by_split: dict[str, list[Record]] = {}
    for n, row in enumerate(rows):
        where = f"{meta} row {n + 2}"
        split = str(row["split"]).strip()
        by_split.setdefault(SPLIT_ALIASES.get(split.lower(), split), []).append(
            Record(
                id=str(row["id"]),
                labels=parse_labels(row["labels"], index, where),
                load=_opener(join(root, str(row["path"]))),
                start=_num(row.get("start")),
                end=_num(row.get("end")),
                group=str(row.get("group") or ""),
            )
        )
    return by_split, tuple(classes)


def _num(v: Any) -> float | None:
    return None if v is None or v == "" else float(v)


def write_metadata(root: str, rows: Sequence[dict[str, Any]], classes: Sequence[str]) -> None:
    """Write ``classes.txt`` then ``metadata.csv`` (last: its presence marks the folder ready)."""
    fs, path = fsspec.core.url_to_fs(root)
    fs.makedirs(path, exist_ok=True)
    with fs.open(f"{path}/classes.txt", "wt", encoding="utf-8") as f:
        f.write("".join(f"{c}\n" for c in classes))
    fields = list(COLUMNS) + [k for k in ("start", "end", "group") if any(k in r for r in rows)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        labels = r.get("labels", ())
        w.writerow({**r, "labels": labels if isinstance(labels, str) else LABEL_SEP.join(labels)})
    with fs.open(f"{path}/metadata.csv", "wt", encoding="utf-8") as f:
        f.write(buf.getvalue())
