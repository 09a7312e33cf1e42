"""What makes a sweep's MLflow runs comparable in the MLflow UI (not only readable by code).

The UI compares runs by their names, their status, MLflow's own system tags, the dataset
inputs, the tables and images of a run and its metrics. :class:`~orchestrator.tracking.
SweepTracker` keeps the keys that resume and dedup rely on (tags ``trial_key``, ``study_id``);
this module derives what a person reads: self-describing run names
(``eat·as20k·protobin·seed0``), the standard ``mlflow.*`` tags, the experiment's description
and kind (without a kind, MLflow 3 opens an experiment as a GenAI one and asks), dataset inputs
and the sweep run's report as tables, images and metrics.
"""

from __future__ import annotations

import getpass
import json
import logging
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric

log = logging.getLogger(__name__)

SEP = "·"
KIND_TAG = "mlflow.experimentKind"
KIND = "custom_model_development"  # MLflow 3's "machine learning" (not GenAI) experiment
NOTE_TAG = "mlflow.note.content"  # the experiment's (and a run's) description in the UI


def study_label(tags: Mapping[str, Any], study_id: str) -> str:
    """``backbone·dataset·probe`` from a study's tags (the study id when one is missing)."""
    parts = [str(tags.get(k) or "") for k in ("backbone", "dataset", "probe")]
    return SEP.join(parts) if all(parts) else study_id


def trial_name(label: str, study_id: str, trial_key: str) -> str:
    """The run name of a trial: ``<label>·search-<n>``, ``<label>·seed<s>`` (the final run of
    the first configuration) or ``<label>·cfg<c>·seed<s>`` (another top configuration)."""
    rest = trial_key.removeprefix(f"{study_id}/")
    stage, _, tail = rest.partition("/")
    if stage == "search":
        return f"{label}{SEP}search-{tail}"
    if stage == "final" and "-" in tail:
        config, _, seed = tail.partition("-")
        return (
            f"{label}{SEP}seed{seed}"
            if config == "0"
            else f"{label}{SEP}cfg{config}{SEP}seed{seed}"
        )
    return f"{label}{SEP}{rest.replace('/', '-')}"


def system_tags(source: str = "orchestrator.sweep") -> dict[str, str]:
    """MLflow's standard source, user and commit tags (the UI shows them as columns); the
    commit comes from :mod:`orchestrator.provenance` (``git_dirty`` is among its run tags)."""
    from orchestrator.provenance import mlflow_git_tags

    tags = {"mlflow.source.name": source, "mlflow.source.type": "LOCAL"}
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):  # no user name in a container
        pass
    return {**tags, **mlflow_git_tags()}


def describe(experiment: str, config: Mapping[str, Any]) -> str:
    """The experiment description (markdown): what sweep, which protocol."""
    search = config.get("search") or {}
    train = config.get("train") or {}
    names = {
        key: ", ".join(str(c.get("name", c)) if isinstance(c, Mapping) else str(c) for c in value)
        for key in ("encoders", "datasets", "probes")
        if isinstance(value := config.get(key), list)
    }
    lines = [
        (
            f"**{experiment}**: frozen audio encoders probed by unmute-bench (sweep "
            f"`{config.get('name', experiment)}`)."
        ),
        "",
        (
            f"Protocol: an Optuna search of {search.get('trials', '?')} trials per "
            f"(encoder, dataset, probe) cell, pruned at rungs after "
            f"{search.get('grace_epochs', '?')} epochs, of {train.get('epochs', '?')} epochs; the top "
            f"{search.get('top_k', '?')} configurations retrained with seeds "
            f"{list(config.get('seeds') or [])}; the selected one (by validation score) is the result."
        ),
        "",
        (
            "Runs: the sweep run (report tables, win matrices, mean ranks), a run per cell "
            "(`backbone·dataset·probe`) and its trials (`·search-<n>`, `·seed<s>`). Filter "
            "`tags.selected = 'true'` for the results, `tags.state = 'pruned'` for pruned trials."
        ),
    ]
    lines += [f"- {key}: {value}" for key, value in names.items()]
    return "\n".join(lines)


def dataset_input(tags: Mapping[str, Any], dataset: Mapping[str, Any]) -> Any:
    """A ``DatasetInput`` for ``client.log_inputs``: name, version, digest and split sizes."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    name = str(tags.get("dataset") or dataset.get("name") or "dataset")
    version = str(tags.get("dataset_version") or dataset.get("version") or "")
    profile = {k: v for k, v in dataset.items() if k not in ("name", "source")}
    digest = str(dataset.get("digest") or "")[:36] or version[:36] or "unknown"
    entity = Dataset(
        name=name,
        digest=digest,
        source_type="unmute-bench",
        source=json.dumps({"dataset": name, "source": str(dataset.get("source") or name)}),
        profile=json.dumps(profile, sort_keys=True, default=str),
    )
    return DatasetInput(entity, tags=[InputTag("mlflow.data.context", "train")])


def mean_ranks(results: Any) -> dict[str, float]:
    """Mean rank of each backbone over the (dataset, probe) cells (1 = best score)."""
    import polars as pl

    if results.is_empty():
        return {}
    cells = results.group_by(["dataset", "probe", "backbone"]).agg(pl.col("score").mean())
    ranked = cells.with_columns(
        pl.col("score").rank("average", descending=True).over(["dataset", "probe"]).alias("rank")
    )
    means = ranked.group_by("backbone").agg(pl.col("rank").mean()).sort("backbone")
    return {row["backbone"]: float(row["rank"]) for row in means.iter_rows(named=True)}


def log_report(client: Any, run_id: str, paths: Mapping[str, Path], results: Any) -> None:
    """The report on the sweep run where the UI shows it: every CSV table as a logged table
    (``tables/<name>.json``), every PNG figure as a logged image (previewed in the run's
    images and artifact view), and the key numbers as metrics."""
    import pandas as pd

    for name, path in sorted(paths.items()):
        path = Path(path)
        if not path.exists():
            continue
        try:
            if path.suffix == ".csv":
                frame = pd.read_csv(path)
                if not frame.empty:
                    client.log_table(run_id, data=frame, artifact_file=f"tables/{path.stem}.json")
            elif path.suffix == ".png":
                from PIL import Image

                with Image.open(path) as image:
                    client.log_image(run_id, image.convert("RGB"), f"figures/{path.name}")
        except (OSError, ValueError) as err:  # one bad file must not lose the others
            log.warning("report file %s not logged to MLflow: %s", path, err)
    metrics = {"cells_done": float(results.select(["backbone", "dataset", "probe"]).n_unique())}
    metrics.update({f"mean_rank.{k}": v for k, v in mean_ranks(results).items()})
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(_safe(k), v, now, 0) for k, v in metrics.items()])


def _safe(name: str) -> str:
    return re.sub(r"[^\w\-. /:]", "_", name)[:250]


def log_probe_model(
    client: Any, experiment_id: str, run_id: str, probe_path: Path, name: str
) -> str:
    """A trained probe file (``probes/checkpoint.py`` format: a small state dict and its
    constructor arguments) as an MLflow logged model of ``run_id``, with its signature
    (tokens ``[batch, time, embed_dim]`` -> logits ``[batch, num_classes]``); its model id."""
    import shutil
    import tempfile

    import numpy as np
    from mlflow.entities import LoggedModelOutput
    from mlflow.models import Model, ModelSignature
    from mlflow.types import Schema, TensorSpec

    from probes.checkpoint import read_record

    record = read_record(probe_path)
    init = record.get("init") or {}
    f32 = np.dtype("float32")
    signature = ModelSignature(
        inputs=Schema([TensorSpec(f32, (-1, -1, int(init.get("embed_dim", -1))), "tokens")]),
        outputs=Schema([TensorSpec(f32, (-1, int(init.get("num_classes", -1))), "logits")]),
    )
    params = {k: str(v)[:500] for k, v in init.items()}
    params["probe"] = str(record.get("probe", ""))
    model = client.create_logged_model(
        experiment_id,
        name=re.sub(r"[^\w\-.]", "-", name)[:200],
        source_run_id=run_id,
        params=params,
        tags={"probe_file": probe_path.name},
        model_type="unmute-probe",
    )
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(probe_path, Path(tmp) / "probe.pt")
        meta = Model(artifact_path="model", run_id=run_id, model_id=model.model_id)
        meta.signature = signature
        meta.add_flavor(
            "unmute_probe", file="probe.pt", loader="probes.checkpoint.load_probe", format=1
        )
        meta.save(str(Path(tmp) / "MLmodel"))
        client.log_model_artifacts(model.model_id, tmp)
    client.finalize_logged_model(model.model_id, "READY")
    client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=0)])
    return model.model_id
