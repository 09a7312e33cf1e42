"""The one trial function: typed spec in, a probe trained on cached token maps, one
``ray.tune.report`` per epoch.

A trial reads its splits from the embedding store (memory-mapped node-local copies, never a
per-trial copy of the data), builds the probe, trains it with the shared recipe and reports the
validation score after every epoch (the rungs ASHA prunes on). A final-stage trial also scores
the test split once, after the last epoch. Scores are percentages, like the paper's tables.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

TRAIN_FIELDS = ("lr", "weight_decay")
EVAL_SPLITS = ("valid", "test")


class TrialError(RuntimeError):
    """A trial that cannot produce a valid result (e.g. a NaN loss); it is marked failed."""


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial needs, as plain data (no DictConfig crosses into a worker)."""

    study_id: str
    stage: str  # "search" | "final"
    probe: str
    probe_hparams: dict[str, Any]
    task: str
    num_classes: int
    store_url: str
    keys: dict[str, Any]  # split -> orchestrator.store.StoreKey
    epochs: int
    batch_size: int
    warmup_epochs: int
    device: str = "auto"
    configs: tuple[dict[str, Any], ...] = field(default=())  # final stage: the top-k configs
    cells: tuple[tuple[int, int], ...] = field(default=())  # final stage: (config index, seed)


def _device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split searched values into TrainConfig fields and probe constructor hparams."""
    train = {k: v for k, v in params.items() if k in TRAIN_FIELDS}
    probe = {k: v for k, v in params.items() if k not in TRAIN_FIELDS}
    return train, probe


SCORES = ("score", "map", "accuracy", "auroc")


def _percent(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    """The score metrics (in [0, 1] from probes/) as percentages, named ``<prefix>_<name>``."""
    return {
        f"{prefix}_{name}": 100.0 * float(value)
        for name, value in metrics.items()
        if name in SCORES
    }


def resolve_params(config: dict[str, Any], spec: TrialSpec) -> tuple[dict[str, Any], int]:
    """The hyperparameters and seed of one trial (a final trial names a (config, seed) cell)."""
    config = dict(config)
    if "cell" in config:
        index, seed = spec.cells[int(config.pop("cell"))]
        return {**spec.configs[index], **config}, int(seed)
    return config, int(config.pop("seed", 0))


def run_trial(config: dict[str, Any], spec: TrialSpec) -> None:
    """Ray Tune function trainable (bound with ``tune.with_parameters``)."""
    import torch
    from ray import tune

    from orchestrator.store import EmbeddingStore
    from probes import TrainConfig, create_probe, evaluate, fit

    params, seed = resolve_params(config, spec)
    train_kw, probe_kw = split_params(params)
    store = EmbeddingStore(spec.store_url)
    data = {split: store.load(spec.keys[split]).to_probe_data(spec.task) for split in EVAL_SPLITS}
    # Extra training splits (BirdSet's cached mixup variants) train alongside ``train``.
    train_keys = [spec.keys["train"], *(k for s, k in spec.keys.items() if s.startswith("train_"))]
    train = store.load_many(train_keys) if len(train_keys) > 1 else store.load(train_keys[0])
    data["train"] = train.to_probe_data(spec.task)
    embed_dim = int(data["train"].tokens.shape[-1])
    torch.manual_seed(seed)
    probe = create_probe(
        spec.probe,
        embed_dim=embed_dim,
        num_classes=spec.num_classes,
        **{**spec.probe_hparams, **probe_kw},
    )
    device = _device(spec.device)
    train_config = TrainConfig(
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        warmup_epochs=spec.warmup_epochs,
        seed=seed,
        device=device,
        **train_kw,
    )
    started = time.monotonic()

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        loss = float(metrics.get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrialError(
                f"training loss is {loss} at epoch {epoch} (probe {spec.probe}, params {params}); "
                "the trial is marked failed. Lower the learning rate range in sweeps/search/."
            )
        val = {k.removeprefix("val_"): v for k, v in metrics.items() if k.startswith("val_")}
        report = {
            "epoch": epoch,
            "train_loss": loss,
            "train_lr": float(metrics.get("lr", float("nan"))),
            **_percent(val, "val"),
        }
        if spec.stage == "final" and epoch == spec.epochs:
            test = evaluate(probe, data["test"], batch_size=spec.batch_size, device=device)
            report.update(_percent(test, "test"))
            report["train_seconds"] = time.monotonic() - started
        report["seed"] = seed
        report["device"] = (
            torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
        )
        tune.report(report)

    fit(probe, data["train"], data["valid"], train_config, on_epoch=on_epoch)
