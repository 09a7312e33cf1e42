"""Saving and loading a trained probe: one torch file that rebuilds the head without the sweep.

The format (version 1) is a plain dict, readable with ``torch.load(..., weights_only=True)``::

    {"format": 1, "probe": "<registry name>",
     "init": {"embed_dim": ..., "num_classes": ..., <other constructor kwargs>},
     "state_dict": {...},
     "meta": {study_id, backbone, encoder, dataset, seed, config, classes, ...}}

``meta`` is whatever the caller records (the orchestrator's final trials write the study id,
encoder name, checkpoint and overrides, dataset, seed, hyperparameters and class names); it must
be JSON-serialisable so it stays readable without pickle and can be logged to MLflow as is.
A probe must come from :func:`probes.create_probe`, which records its name and constructor
kwargs. ``path`` is a local path or an open binary file (the orchestrator opens ``s3://`` URLs
with fsspec and passes the file); local writes go through a temporary file and a rename, so a
reader never sees half a file.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any, BinaryIO

import torch

from probes.factory import create_probe
from probes.pooling import ProbeHead

FORMAT = 1
KEYS = ("format", "probe", "init", "state_dict", "meta")


class CheckpointError(ValueError):
    """A probe that cannot be saved, or a file that is not a saved probe."""


def probe_record(probe: ProbeHead, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The dict :func:`save_probe` writes (state dict on the CPU)."""
    name = getattr(probe, "probe_name", None)
    init = getattr(probe, "init_kwargs", None)
    if name is None or init is None:
        raise CheckpointError(
            f"{type(probe).__name__} was not built by probes.create_probe, so its registry name "
            "and constructor kwargs are unknown; build it with create_probe(name, embed_dim, "
            "num_classes, **hparams)."
        )
    meta = dict(meta or {})
    try:
        json.dumps(meta)
        json.dumps(init)
    except TypeError as err:
        raise CheckpointError(
            f"probe meta must be JSON-serialisable (str, int, float, bool, None, lists, dicts): "
            f"{err}. Convert numpy scalars and paths with int()/float()/str()."
        ) from None
    state = {k: v.detach().cpu().clone() for k, v in probe.state_dict().items()}
    return {"format": FORMAT, "probe": name, "init": dict(init), "state_dict": state, "meta": meta}


def save_probe(path: str | os.PathLike | BinaryIO, probe: ProbeHead, meta: dict[str, Any]) -> None:
    """Write ``probe`` (its name, constructor kwargs and weights) and ``meta`` to ``path``."""
    record = probe_record(probe, meta)
    if not isinstance(path, (str, os.PathLike)):
        torch.save(record, path)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        torch.save(record, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def read_record(path: str | os.PathLike | BinaryIO | bytes) -> dict[str, Any]:
    """The checked dict of a saved probe, without building the head."""
    source = io.BytesIO(path) if isinstance(path, bytes) else path
    try:
        record = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    # torch.load fails on foreign files with many types (UnpicklingError, RuntimeError,
    # EOFError, KeyError, ...); each is re-raised as one error naming the file.
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a saved probe ({type(err).__name__}: {err}).") from None
    if not isinstance(record, dict) or set(KEYS) - set(record):
        found = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise CheckpointError(
            f"{path}: not a saved probe (expected keys {', '.join(KEYS)}; found {found}). "
            "Write it with probes.checkpoint.save_probe."
        )
    if record["format"] != FORMAT:
        raise CheckpointError(
            f"{path}: saved probe format {record['format']!r}; this version reads format "
            f"{FORMAT}. Re-save it with this version's save_probe."
        )
    return record


def load_probe(path: str | os.PathLike | BinaryIO | bytes) -> tuple[ProbeHead, dict[str, Any]]:
    """Rebuild the saved probe (in eval mode, on the CPU) and return it with its meta."""
    record = read_record(path)
    init = dict(record["init"])
    probe = create_probe(
        record["probe"],
        embed_dim=init.pop("embed_dim"),
        num_classes=init.pop("num_classes"),
        **init,
    )
    probe.load_state_dict(record["state_dict"], strict=True)
    probe.eval()
    return probe, dict(record["meta"])
