"""Reader of Hugging Face datasets stored as parquet with audio bytes (local, S3 or ``hf://``).

This is the layout ``datasets`` writes with ``push_to_hub`` and the Hub's parquet conversion:
``[<config>/]<split>/*.parquet`` or ``[<config>/|data/]<split>-00000-of-00004.parquet``, an
``audio`` column of structs ``{bytes, path}``, label columns as ``ClassLabel`` ints (their names
in the ``huggingface`` key of the parquet schema metadata), sequences of them (multi-label), or
strings. Metadata columns are read once when the split opens; audio bytes are read row group by
row group on access, so a 50 GB split opens in seconds.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any

import fsspec

from orchestrator.datasets.spec import DatasetError, DatasetSpec
from orchestrator.datasets.splits import Record

log = logging.getLogger(__name__)

LABEL_COLUMNS = (
    "ebird_code_multilabel",
    "labels",
    "label",
    "events",
    "target",
    "category",
    "ebird_code",
)
ID_COLUMNS = ("filepath", "filename", "file", "id", "path")
SPLIT_ALIASES = {"validation": "valid", "val": "valid", "dev": "valid"}
TABLE_EXT = (".parquet", ".arrow")


def parquet_files(root: str, split: str, config: str | None = None) -> list[str]:
    """Parquet (or ``save_to_disk`` arrow) files of ``split`` under ``root``, in name order."""
    fs, base = fsspec.core.url_to_fs(root)
    proto = root.split("://")[0] + "://" if "://" in root else ""
    files = sorted(fs.find(base) if fs.isdir(base) else [])
    out = []
    for f in files:
        if not f.endswith(TABLE_EXT):
            continue
        rel = f[len(base.rstrip("/")) + 1 :]
        parts = rel.split("/")
        if config and config not in parts[:-1] and len(parts) > 1 and parts[0] not in ("data",):
            continue
        name = parts[-1]
        if (len(parts) > 1 and parts[-2] == split) or re.match(rf"{re.escape(split)}-\d+", name):
            out.append(proto + f if proto else f)
    return out


def available_splits(root: str, config: str | None = None) -> list[str]:
    fs, base = fsspec.core.url_to_fs(root)
    names = set()
    for f in fs.find(base) if fs.isdir(base) else []:
        if f.endswith(TABLE_EXT):
            parts = f.split("/")
            # push_to_hub names: train-00000-of-00001.parquet, older ones with a -<hash> suffix
            m = re.match(r"(.+?)-\d{5}-of-\d{5}(?:-[0-9a-f]+)?\.parquet$", parts[-1])
            names.add(m.group(1) if m else parts[-2])
    return sorted(names)


def _is_multi_hot(items: list | tuple, n_classes: int) -> bool:
    """A label value that is a 0/1 vector with one entry per class (not class indices)."""
    return (
        n_classes > 1
        and len(items) == n_classes
        and all(isinstance(v, (int, float, bool)) and v in (0, 1) for v in items)
    )


def hf_features(schema: Any) -> dict[str, Any]:
    """The ``datasets`` features stored in a parquet schema's metadata (empty if none)."""
    meta = schema.metadata or {}
    raw = meta.get(b"huggingface")
    if not raw:
        return {}
    info = json.loads(raw)
    return dict(info.get("info", {}).get("features", {}))


def class_names(feature: Any) -> list[str] | None:
    """ClassLabel names of a feature, also inside ``Sequence``/list wrappers."""
    if isinstance(feature, list) and feature:
        return class_names(feature[0])
    if isinstance(feature, dict):
        if feature.get("_type") == "ClassLabel":
            return list(feature.get("names") or [])
        for k in ("feature", "features"):
            if k in feature:
                return class_names(feature[k])
    return None


class _RowGroups:
    """Reads the audio column of one parquet file, keeping the last row group in memory."""

    def __init__(self, url: str, column: str) -> None:
        self.url = url
        self.column = column
        self._pf: Any = None
        self._bounds: list[int] = []
        self._cached: tuple[int, list[Any]] | None = None
        self._lock = threading.Lock()

    def _open(self) -> Any:
        if self._pf is None and self.url.endswith(".arrow"):
            self._pf = arrow_table(self.url).column(self.column)
            self._bounds = [len(self._pf)]
        if self._pf is None:
            import pyarrow.parquet as pq

            self._pf = pq.ParquetFile(fsspec.open(self.url, "rb").open())
            total = 0
            self._bounds = []
            for i in range(self._pf.num_row_groups):
                total += self._pf.metadata.row_group(i).num_rows
                self._bounds.append(total)
        return self._pf

    def get(self, row: int) -> Any:
        with self._lock:
            return self._get(row)

    def _get(self, row: int) -> Any:
        pf = self._open()
        rg = next(i for i, b in enumerate(self._bounds) if row < b)
        if self.url.endswith(".arrow"):
            value = pf[row].as_py()
            return (value.get("bytes") or b"") if isinstance(value, dict) else (value or b"")
        if self._cached is None or self._cached[0] != rg:
            table = pf.read_row_group(rg, columns=[self.column])
            self._cached = (rg, table.column(0).to_pylist())
        value = self._cached[1][row - (self._bounds[rg - 1] if rg else 0)]
        if isinstance(value, dict):
            return value.get("bytes") or b""
        return value or b""


def read_parquet_rows(url: str, skip: tuple[str, ...] = ()) -> tuple[list[dict], dict, str]:
    """Non-audio columns of a parquet file as rows, its HF features, and the audio column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if url.endswith(".arrow"):
        table = arrow_table(url)
        schema = table.schema
        features = hf_features(schema) or _dataset_info_features(url)
    else:
        with fsspec.open(url, "rb") as f:
            pf = pq.ParquetFile(f)
            schema = pf.schema_arrow
            table = None
            features = hf_features(schema)
    audio = next(
        (
            fld.name
            for fld in schema
            if pa.types.is_struct(fld.type) and "bytes" in [c.name for c in fld.type]
        ),
        next((fld.name for fld in schema if pa.types.is_binary(fld.type)), ""),
    )
    cols = [n for n in schema.names if n != audio and n not in skip]
    if table is not None:
        rows = table.select(cols).to_pylist()
    else:
        with fsspec.open(url, "rb") as f:
            rows = pq.ParquetFile(f).read(columns=cols).to_pylist()
    return rows, features, audio


def arrow_table(url: str) -> Any:
    """A ``datasets.save_to_disk`` arrow file (IPC stream), memory-mapped when local."""
    import pyarrow as pa

    if "://" not in url:
        return pa.ipc.open_stream(pa.memory_map(url)).read_all()
    with fsspec.open(url, "rb") as f:
        return pa.ipc.open_stream(pa.py_buffer(f.read())).read_all()


def _dataset_info_features(url: str) -> dict[str, Any]:
    info = url.rsplit("/", 1)[0] + "/dataset_info.json"
    try:
        with fsspec.open(info, "rt", encoding="utf-8") as f:
            return dict(json.load(f).get("features", {}))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def rows_to_records(
    spec: DatasetSpec,
    url: str,
    rows: list[dict],
    audio: str,
    classes: tuple[str, ...],
    label_column: str | None = None,
    names: list[str] | None = None,
) -> list[Record]:
    """One record per row; labels from ``label_column`` mapped onto ``classes``."""
    if not audio:
        raise DatasetError(f"{url}: no audio column (a struct with 'bytes', or binary).")
    col = label_column or next((c for c in LABEL_COLUMNS if rows and c in rows[0]), None)
    if col is None:
        raise DatasetError(
            f"{url}: no label column among {LABEL_COLUMNS}; set option label_column."
        )
    index = {c: i for i, c in enumerate(classes)}
    reader = _RowGroups(url, audio)
    id_col = next((c for c in ID_COLUMNS if rows and c in rows[0]), None)
    out = []
    for n, row in enumerate(rows):
        value = row[col]
        items = value if isinstance(value, (list, tuple)) else ([] if value is None else [value])
        if _is_multi_hot(items, len(classes)) and names is None:
            items = [i for i, v in enumerate(items) if v]  # a 0/1 vector over the classes
        labels = set()
        for item in items:
            name = names[item] if names is not None and isinstance(item, int) else item
            if isinstance(name, str):
                if name not in index:
                    raise DatasetError(
                        f"{url} row {n}: label {name!r} not in the classes of "
                        f"{spec.name!r} ({len(classes)} classes)."
                    )
                labels.add(index[name])
            else:
                if isinstance(name, float) and not float(name).is_integer():
                    raise DatasetError(
                        f"{url} row {n}: label {name!r} is neither a class index nor a 0/1 "
                        f"vector over the {len(classes)} classes of {spec.name!r}."
                    )
                if not 0 <= int(name) < len(classes):
                    raise DatasetError(
                        f"{url} row {n}: class index {int(name)} outside 0..{len(classes) - 1} "
                        f"({spec.name!r} has {len(classes)} classes)."
                    )
                labels.add(int(name))
        rid = str(row[id_col]).split("/")[-1] if id_col else f"{url.split('/')[-1]}:{n}"
        out.append(
            Record(
                id=rid,
                labels=tuple(sorted(labels)),
                load=(lambda r=n: reader.get(r)),
                group=str(row.get("src_file", "")),
            )
        )
    return out


def read(
    spec: DatasetSpec, root: str, folds: dict[int, str] | None = None
) -> tuple[dict[str, list[Record]], tuple[str, ...]]:
    """All splits of an HF parquet dataset under ``root`` (``spec.native_splits`` applied).

    With ``folds``, rows are assigned to splits by their ``fold`` column instead (ESC-50).
    """
    label_column = spec.opts.get("label_column")
    by_split: dict[str, list[Record]] = {}
    classes: tuple[str, ...] = spec.classes
    from orchestrator.datasets.local import read_classes

    staged = read_classes(root)
    if not classes and staged:
        classes = staged
    ours = {spec.native_split(s): s for s in spec.splits}
    for native in available_splits(root, spec.hf_config):
        split = ours.get(native) or SPLIT_ALIASES.get(native, native)
        if split not in spec.splits and folds is None:
            continue
        for url in parquet_files(root, native, spec.hf_config):
            rows, features, audio = read_parquet_rows(url)
            col = label_column or next((c for c in LABEL_COLUMNS if rows and c in rows[0]), None)
            names = class_names(features.get(col)) if col else None
            if names and tuple(names) != classes:
                if classes and len(names) == len(classes):
                    log.warning(
                        "%s: the source's class names differ from the registered ones "
                        "of %s; using the source's (same count, %d)",
                        url,
                        spec.name,
                        len(names),
                    )
                classes = tuple(names)
            recs = rows_to_records(spec, url, rows, audio, classes, col, names)
            if folds is not None and rows and "fold" in rows[0]:
                for row, rec in zip(rows, recs, strict=True):
                    by_split.setdefault(folds[int(row["fold"])], []).append(rec)
            else:
                by_split.setdefault(split, []).extend(recs)
    if not by_split:
        raise DatasetError(
            f"{root}: no parquet files for {spec.name!r} (config "
            f"{spec.hf_config}); found splits {available_splits(root)}."
        )
    if len(classes) != spec.num_classes:
        raise DatasetError(
            f"{root}: {len(classes)} classes, {spec.name!r} expects "
            f"{spec.num_classes}; is this the right dataset?"
        )
    return by_split, classes
