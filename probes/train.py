"""The shared training recipe: :func:`fit` and :func:`evaluate` with torch alone.

AdamW, per-step cosine schedule with optional linear warmup, ASL (multi-label) or cross-entropy
(multi-class), validation after every epoch reported through ``on_epoch`` (the orchestrator
forwards it to Ray Tune; this module imports nothing but torch and numpy).

Reproducibility: ``fit`` runs inside ``torch.random.fork_rng`` seeded from ``TrainConfig.seed``
(the caller's global RNG is untouched), re-initialises the probe from that seed
(``reinit=True``, default), and shuffles with its own ``torch.Generator``; two fits with the same
seed, data and device give identical results.

Choices: weight decay applies to matrices and prototypes, not to biases, norms or 1-D
parameters (the usual timm/AdamW practice); the learning rate decays to 0 at the last step; the
probe is left in its final state (``FitResult.best_val`` records the best epoch's metrics).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from probes.data import ProbeData, iter_batches
from probes.losses import LOSSES, make_loss, resolve_loss
from probes.metrics import compute_metrics

logger = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]
PRECISIONS = ("fp32", "bf16", "auto")


def resolve_precision(precision: str, device: str) -> str:
    """``fp32`` or ``bf16``: ``auto`` is bf16 on a CUDA device that supports it, else fp32."""
    if precision != "auto":
        return precision
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def autocast(device: str, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` for ``precision="bf16"``; a no-op context for fp32."""
    if resolve_precision(precision, device) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of one training run (defaults: the paper's recipe)."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    epochs: int = 30
    batch_size: int = 128
    warmup_epochs: int = 0
    seed: int = 0
    device: str = "cpu"
    loss: str = "auto"  # auto: asl for multilabel, ce for multiclass
    precision: str = "fp32"  # fp32 | bf16 (autocast) | auto (bf16 on GPUs that support it)

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(
                f"need lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}."
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"need epochs, batch_size >= 1, got {self.epochs}, {self.batch_size}.")
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r} is not valid; choose one of {', '.join(LOSSES)}.")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"train.precision={self.precision!r} is not valid; choose one of "
                f"{', '.join(PRECISIONS)}."
            )
        if not 0 <= self.warmup_epochs <= self.epochs:
            raise ValueError(f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}.")


@dataclass(frozen=True)
class FitResult:
    """What a fit produced: per-epoch history, best and final validation metrics, timing."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_val: dict[str, float] = field(default_factory=dict)
    final_val: dict[str, float] = field(default_factory=dict)
    best_epoch: int = 0
    train_seconds: float = 0.0


def cosine_lr_factor(step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """LR multiplier at ``step``: linear warmup to 1, then cosine decay to 0 at ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(probe: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with decay on >= 2-D parameters (weights, queries, prototypes) only."""
    decay = [p for p in probe.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in probe.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if rest:
        groups.append({"params": rest, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=lr)


def _check_classes(probe: nn.Module, data: ProbeData) -> None:
    expected = getattr(probe, "num_classes", None)
    if expected is not None and data.num_classes is not None and data.num_classes != expected:
        raise ValueError(
            f"the probe has {expected} outputs but the labels have {data.num_classes} classes; "
            "create the probe with num_classes matching the dataset."
        )


@torch.no_grad()
def predict(
    probe: nn.Module,
    data: ProbeData,
    batch_size: int = 256,
    device: str = "cpu",
    precision: str = "fp32",
) -> np.ndarray:
    """Logits ``[n, C]`` of ``probe`` on ``data`` (eval mode, in order, float32 numpy)."""
    was_training = probe.training
    probe.eval()
    dev = torch.device(device)
    out = []
    for batch in iter_batches(data, batch_size, dev):
        with autocast(device, precision):
            logits = probe(
                batch.tokens, cls=batch.cls, padding_mask=batch.padding_mask, grid=batch.grid
            )
        out.append(logits.float().cpu().numpy())
    probe.train(was_training)
    return np.concatenate(out, axis=0)


def evaluate(
    probe: nn.Module,
    data: ProbeData,
    batch_size: int = 256,
    device: str = "cpu",
    precision: str = "fp32",
) -> dict[str, float]:
    """Metrics of ``probe`` on ``data``: ``score``, ``map`` or ``accuracy``, ``auroc``."""
    _check_classes(probe, data)
    probe.to(device)
    labels = data.labels.cpu().numpy() if isinstance(data.labels, torch.Tensor) else data.labels
    logits = predict(probe, data, batch_size, device, precision)
    return compute_metrics(logits, np.asarray(labels), data.task)


def _train_epoch(
    probe: nn.Module,
    data: ProbeData,
    config: TrainConfig,
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
) -> float:
    probe.train()
    total, count = 0.0, 0
    for batch in iter_batches(data, config.batch_size, torch.device(config.device), generator):
        with autocast(config.device, config.precision):
            logits = probe(
                batch.tokens, cls=batch.cls, padding_mask=batch.padding_mask, grid=batch.grid
            )
            aux = probe.auxiliary_loss() if hasattr(probe, "auxiliary_loss") else None
        loss = loss_fn(logits.float(), batch.labels)
        aux = None if aux is None else aux.float()
        objective = loss if aux is None else loss + aux
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        scheduler.step()
        if not torch.isfinite(objective):
            raise FloatingPointError(
                f"training loss became {objective.item()} (lr={config.lr}); lower the learning "
                "rate or check the embeddings for NaN/inf."
            )
        total += float(objective.detach()) * batch.tokens.shape[0]
        count += batch.tokens.shape[0]
    return total / max(1, count)


def fit(
    probe: nn.Module,
    train: ProbeData,
    val: ProbeData | None,
    config: TrainConfig,
    on_epoch: EpochCallback | None = None,
    *,
    reinit: bool = True,
) -> FitResult:
    """Train ``probe`` on ``train`` with the shared recipe; validate on ``val`` every epoch.

    ``on_epoch(epoch, metrics)`` is called after every epoch (1-based) with ``loss``, ``lr`` and,
    with ``val``, ``val_score``, ``val_map``/``val_accuracy`` and ``val_auroc`` (in [0, 1]).
    ``reinit=False`` keeps the probe's current weights instead of re-initialising from the seed.
    """
    _check_classes(probe, train)
    loss_fn = make_loss(config.loss, train.task)
    logger.info(
        "fit %s on %d examples (%s, loss=%s), %s",
        type(probe).__name__,
        len(train),
        train.task,
        resolve_loss(config.loss, train.task),
        config,
    )
    device = torch.device(config.device)
    rng_devices: list[int] = []
    if device.type == "cuda":
        rng_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    with torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(config.seed)
        if reinit and hasattr(probe, "reset_parameters"):
            probe.reset_parameters()
        probe.to(device)
        generator = torch.Generator().manual_seed(config.seed)
        optimizer = make_optimizer(probe, config.lr, config.weight_decay)
        steps_per_epoch = math.ceil(len(train) / config.batch_size)
        total = steps_per_epoch * config.epochs
        warmup = steps_per_epoch * config.warmup_epochs
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: cosine_lr_factor(step, total, warmup)
        )
        for epoch in range(1, config.epochs + 1):
            lr = optimizer.param_groups[0]["lr"]
            loss = _train_epoch(probe, train, config, loss_fn, optimizer, scheduler, generator)
            row: dict[str, float] = {"epoch": float(epoch), "loss": loss, "lr": lr}
            if val is not None:
                metrics = evaluate(probe, val, config.batch_size, config.device, config.precision)
                row.update({f"val_{k}": v for k, v in metrics.items()})
            history.append(row)
            logger.debug("epoch %d: %s", epoch, row)
            if on_epoch is not None:
                on_epoch(epoch, dict(row))
    seconds = time.perf_counter() - start
    if val is None:
        return FitResult(history=history, best_epoch=len(history), train_seconds=seconds)
    scored = [(i, r["val_score"]) for i, r in enumerate(history) if not math.isnan(r["val_score"])]
    best_i = max(scored, key=lambda t: t[1])[0] if scored else len(history) - 1

    def _val(row: dict[str, float]) -> dict[str, float]:
        return {k[4:]: v for k, v in row.items() if k.startswith("val_")}

    return FitResult(
        history=history,
        best_val=_val(history[best_i]),
        final_val=_val(history[-1]),
        best_epoch=best_i + 1,
        train_seconds=seconds,
    )
