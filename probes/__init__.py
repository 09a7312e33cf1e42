"""Probe heads, losses, metrics and the fit/evaluate loop; usable with torch alone.

from probes import create_probe, fit, evaluate, ProbeData, TrainConfig
probe = create_probe("protobin", embed_dim=768, num_classes=527, prototypes_per_class=10)
result = fit(probe, train, val, TrainConfig(epochs=30))
metrics = evaluate(probe, test)

Names are imported on first use (PEP 562), so ``from probes import PROBES`` (listing, config
validation, ``--dry-run``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "CheckpointError": "probes.checkpoint",
    "load_probe": "probes.checkpoint",
    "save_probe": "probes.checkpoint",
    "PROBES": "probes.factory",
    "create_probe": "probes.factory",
    "probe_hparams": "probes.factory",
    "ProbeData": "probes.data",
    "AsymmetricLoss": "probes.losses",
    "make_loss": "probes.losses",
    "compute_metrics": "probes.metrics",
    "ProbeHead": "probes.pooling",
    "FitResult": "probes.train",
    "TrainConfig": "probes.train",
    "evaluate": "probes.train",
    "fit": "probes.train",
    "predict": "probes.train",
}

__all__ = sorted(_LAZY)  # noqa: PLE0605 - the lazy names


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'probes' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
