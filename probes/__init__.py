"""Probe heads, losses, metrics and the fit/evaluate loop; usable with torch alone.

from probes import create_probe, fit, evaluate, ProbeData, TrainConfig
probe = create_probe("protobin", embed_dim=768, num_classes=527, prototypes_per_class=10)
result = fit(probe, train, val, TrainConfig(epochs=30))
metrics = evaluate(probe, test)
"""

from __future__ import annotations

from probes.checkpoint import CheckpointError, load_probe, save_probe
from probes.data import ProbeData
from probes.factory import PROBES, create_probe, probe_hparams
from probes.losses import AsymmetricLoss, make_loss
from probes.metrics import compute_metrics
from probes.pooling import ProbeHead
from probes.train import FitResult, TrainConfig, evaluate, fit, predict

__all__ = [
    "PROBES",
    "AsymmetricLoss",
    "CheckpointError",
    "FitResult",
    "ProbeData",
    "ProbeHead",
    "TrainConfig",
    "compute_metrics",
    "create_probe",
    "evaluate",
    "fit",
    "load_probe",
    "make_loss",
    "predict",
    "probe_hparams",
    "save_probe",
]
