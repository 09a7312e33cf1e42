"""What the MLflow UI shows of a sweep: run names, MLflow's own tags, dataset inputs, and the
sweep run's comparison tables and metrics.

The UI is one of the three ways this tool is read: runs must name themselves
(``eat·as20k·protobin·seed0``), use the fields the UI has columns and views for (source and
commit tags, "Datasets used", tables), and a sweep must compare with another from the runs
table alone. :class:`orchestrator.tracking.SweepTracker` writes what this module builds.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from mlflow.entities import Dataset, DatasetInput, InputTag

NAME_SEP = "\u00b7"  # the middle dot of run names: eat·as20k·protobin·seed0
# report tables (write_report's keys) the sweep run shows as MLflow tables
TABLES = ("summary", "win_matrix", "probe_ranks", "encoder_ranks")


def standard_tags() -> dict[str, str]:
    """MLflow's own source tags (the UI shows them as columns): commit, user, entry point."""
    from orchestrator.provenance import git_sha

    tags = {
        "mlflow.user": _user(),
        "mlflow.source.name": "orchestrator.sweep",
        "mlflow.source.type": "JOB",
    }
    commit = git_sha()
    if commit != "unknown":
        tags["mlflow.source.git.commit"] = commit.removesuffix("-dirty")
    return tags


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


def label(tags: Mapping[str, Any]) -> str:
    """``backbone·dataset·probe`` of a study's tags ('' when they are not known)."""
    parts = [str(tags.get(k, "")) for k in ("backbone", "dataset", "probe")]
    return NAME_SEP.join(parts) if all(parts) else ""


def trial_name(trial_key: str, tags: Mapping[str, Any]) -> str:
    """The run name of a trial: ``eat·as20k·protobin·search-3``, ``eat·as20k·protobin·seed0``
    (the best configuration's final run) or ``...·cfg1·seed0`` (another top-k configuration);
    the study's part of the key when its tags lack the labels."""
    study, stage, rest = trial_key.rsplit("/", 2)
    if stage == "search":
        tail = f"search-{rest}"
    else:
        config, seed = rest.split("-", 1)
        tail = f"seed{seed}" if config == "0" else f"cfg{config}{NAME_SEP}seed{seed}"
    return NAME_SEP.join([label(tags) or study, tail])


def dataset_input(tags: Mapping[str, Any], splits: Mapping[str, int] | None = None) -> DatasetInput:
    """A study's dataset as an MLflow dataset input (the UI's "Datasets used" column)."""
    name, version = str(tags.get("dataset", "")), str(tags.get("dataset_version", ""))
    profile = {"task_metric": tags.get("metric"), "splits": dict(splits or {})}
    dataset = Dataset(
        name=name,
        digest=version[:36] or "unknown",
        source_type="unmute-bench",
        source=json.dumps({"dataset": name, "version": version}),
        profile=json.dumps(profile),
    )
    return DatasetInput(dataset, [InputTag("mlflow.data.context", "train")])


def probe_model(probe_file: Path, folder: Path) -> dict[str, str]:
    """Write a selected probe as an MLflow model folder (its state-dict file and an ``MLmodel``
    with the signature: tokens ``[batch, N, D]`` float32 and a padding mask in, one score per
    class out); return its params (probe name and constructor arguments)."""
    from mlflow.models import Model
    from mlflow.models.signature import ModelSignature
    from mlflow.types import Schema, TensorSpec

    from probes.checkpoint import read_record

    record = read_record(probe_file)  # checks the file; torch on the driver, once per study
    init = dict(record["init"])
    dim, classes = int(init["embed_dim"]), int(init["num_classes"])
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(probe_file, folder / "probe.pt")
    signature = ModelSignature(
        inputs=Schema([
            TensorSpec(np.dtype("float32"), (-1, -1, dim), "tokens"),
            TensorSpec(np.dtype("bool"), (-1, -1), "padding_mask"),
        ]),
        outputs=Schema([TensorSpec(np.dtype("float32"), (-1, classes), "scores")]),
    )  # fmt: skip
    model = Model(signature=signature, metadata={"probe": record["probe"], "loader":
                  "probes.load_probe('probe.pt')"})  # fmt: skip
    model.save(folder / "MLmodel")
    return {"probe": str(record["probe"]), **{k: json.dumps(v) for k, v in init.items()}}


def comparison(
    results: pl.DataFrame, report: Mapping[str, Path]
) -> tuple[dict[str, tuple[dict[str, list], str]], dict[str, float]]:
    """The sweep run's tables (``{name: (columns, content digest)}``: the result rows and the
    report's tables that exist) and metrics (``cells_done``, ``mean_rank.<backbone>``: the
    mean over (dataset, probe) cells of the backbone's rank by mean test score, 1 = best)."""
    frames = {"results": results}
    for name in TABLES:
        path = report.get(name)
        if path is not None and Path(path).suffix == ".csv" and Path(path).exists():
            frames[name] = pl.read_csv(path)
    tables = {}
    for name, frame in frames.items():
        data = {c: [_plain(v) for v in frame.get_column(c).to_list()] for c in frame.columns}
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        tables[name] = (data, hashlib.sha256(blob).hexdigest()[:12])
    cells = (
        results.group_by(["backbone", "dataset", "probe"])
        .agg(pl.col("score").mean().alias("mean"))
        .with_columns(
            pl.col("mean").rank("min", descending=True).over(["dataset", "probe"]).alias("rank")
        )
    )
    metrics = {"cells_done": float(cells.height)}
    for row in cells.group_by("backbone").agg(pl.col("rank").mean()).iter_rows(named=True):
        metrics[f"mean_rank.{row['backbone']}"] = float(row["rank"])
    return tables, metrics


def _plain(value: Any) -> Any:
    """A JSON-able cell (lists of seeds' scores stay lists)."""
    if isinstance(value, float) and math.isnan(value):  # JSON has no NaN
        return None
    return value
