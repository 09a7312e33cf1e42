"""``dataset=path/to/folder``: a user's dataset folder, selectable without registering it.

The folder holds the canonical layout (``metadata.csv``/``.parquet``, audio, see ``local.py``)
and optionally ``classes.txt`` and a short ``dataset.yaml``::

    name: mydata          # default: the folder's name
    task: multiclass      # default: multiclass when every row has exactly one label
    clip_seconds: 5.0     # default: measured on the first clips
    sample_rate: 16000    # default: measured
    description: ...

The metric follows the task (accuracy / mAP). The spec's version hashes the metadata table,
``classes.txt`` and ``dataset.yaml``, so editing the folder never serves stale embeddings.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from orchestrator.datasets.local import LABEL_SEP, find_metadata, read_classes, read_table
from orchestrator.datasets.spec import METRICS, TASKS, DatasetError, DatasetSpec

log = logging.getLogger(__name__)

KEYS = ("name", "task", "clip_seconds", "sample_rate", "description")
# display name -> folder, for names the driver resolved (workers get the folder as source)
ALIASES: dict[str, str] = {}


def is_folder_ref(value: str) -> bool:
    """A path (not a registered name) that names a dataset folder."""
    return ("/" in value or value.startswith(".") or os.path.isdir(value)) and "://" not in value


def _yaml(folder: Path) -> dict[str, Any]:
    path = folder / "dataset.yaml"
    if not path.is_file():
        return {}
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise DatasetError(f"{path}: unknown keys {unknown}; valid: {', '.join(KEYS)}.")
    return data


def _measure(folder: Path, rows: list[dict[str, Any]]) -> tuple[float, int]:
    import soundfile as sf

    seconds, rate = 0.0, 0
    for row in rows[:8]:
        if row.get("start") not in (None, "") and row.get("end") not in (None, ""):
            seconds = max(seconds, float(row["end"]) - float(row["start"]))
        info = sf.info(str(folder / str(row["path"])))
        rate = rate or int(info.samplerate)
        if row.get("start") in (None, ""):
            seconds = max(seconds, info.frames / info.samplerate)
    return round(seconds, 3), rate


def folder_spec(path: str, name: str | None = None) -> DatasetSpec:
    """The :class:`DatasetSpec` of the folder at ``path``; errors name the file to fix."""
    folder = Path(path).expanduser().resolve()
    if not folder.is_dir():
        raise DatasetError(
            f"dataset {path!r}: no such folder. Give a folder holding metadata.csv (columns id, "
            f"split, path, labels), the audio files and optionally classes.txt / dataset.yaml."
        )
    meta = find_metadata(str(folder))
    if meta is None:
        raise DatasetError(
            f"dataset folder {str(folder)!r} has no metadata.csv or metadata.parquet: write one "
            f"with columns id, split (train/valid/test), path (relative), labels (';'-joined)."
        )
    decl = _yaml(folder)
    rows = read_table(meta)
    labels = [[x for x in str(r.get("labels") or "").split(LABEL_SEP) if x] for r in rows]
    classes = read_classes(str(folder)) or tuple(sorted({x for ls in labels for x in ls}))
    task = str(
        decl.get("task") or ("multiclass" if all(len(ls) == 1 for ls in labels) else "multilabel")
    )
    if task not in TASKS:
        raise DatasetError(f"{folder / 'dataset.yaml'}: task {task!r}; valid: {', '.join(TASKS)}.")
    measured = (0.0, 0)
    if "clip_seconds" not in decl or "sample_rate" not in decl:
        measured = _measure(folder, rows)
    h = hashlib.sha256()
    for part in (meta, str(folder / "classes.txt"), str(folder / "dataset.yaml")):
        if os.path.isfile(part):
            h.update(Path(part).read_bytes())
    return DatasetSpec(
        name=str(decl.get("name") or name or folder.name),
        task=task,
        classes=tuple(classes),
        metric=METRICS[task],
        clip_seconds=float(decl.get("clip_seconds") or measured[0]),
        sample_rate=int(decl.get("sample_rate") or measured[1]),
        splits=("train", "valid", "test"),
        version=f"folder-{h.hexdigest()[:12]}",
        source=str(folder),
        description=str(decl.get("description") or f"user folder {folder}"),
    )


def display_name(path: str) -> tuple[str, str]:
    """(the dataset's name, its absolute folder); remembered as an alias on this process."""
    spec = folder_spec(path)
    ALIASES[spec.name] = spec.source
    return spec.name, spec.source
