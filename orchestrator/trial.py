"""The one trial function: typed spec in, a probe trained on cached token maps, one
``ray.tune.report`` per epoch.

A trial reads its splits from the embedding store (memory-mapped node-local copies, never a
per-trial copy of the data; a reused worker keeps the last few splits it loaded, so switching
between studies is cheap), builds the probe, trains it with the shared recipe and reports the
validation score after every epoch (the rungs successive halving prunes on). A final-stage
trial also scores the test split once, after the last epoch, and saves the trained probe
(``probes/checkpoint.py`` format) beside the Tune storage for the driver to collect. Scores are
percentages, like the paper's tables.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

TRAIN_FIELDS = ("lr", "weight_decay")
EVAL_SPLITS = ("valid", "test")


class TrialError(RuntimeError):
    """A trial that cannot produce a valid result (e.g. a NaN loss); it is marked failed."""


class StoreEntryLost(TrialError):
    """A store entry the trial reads failed its checksum (or lost its manifest).

    The store has set the entry aside; the driver recognises this error by its class name in
    the trial's error text, recomputes the entry and reruns the trial with its own point: the
    trial is never recorded as failed."""


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
    precision: str = "fp32"  # fp32 | bf16 | auto (resolved on the worker's device)
    placement: str = "auto"  # probes/resident.py: auto | fp16 | fp32 | stream | memmap
    configs: tuple[dict[str, Any], ...] = field(default=())  # final stage: the top-k configs
    cells: tuple[tuple[int, int], ...] = field(default=())  # final stage: (config index, seed)
    probe_dir: str = ""  # final stage: where trained probes go (local folder or URL)
    meta: dict[str, Any] = field(default_factory=dict)  # provenance saved with each probe


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
    """The hyperparameters and seed of one trial (a final trial names a (config, seed) cell,
    or, from the schedule, carries ``params`` and ``seed``)."""
    config = dict(config)
    if "params" in config:
        return dict(config["params"]), int(config.get("seed", 0))
    if "cell" in config:
        index, seed = spec.cells[int(config.pop("cell"))]
        return {**spec.configs[index], **config}, int(seed)
    return config, int(config.pop("seed", 0))


_CACHE: OrderedDict[tuple, Any] = OrderedDict()
CACHE_SPLITS = int(os.environ.get("UNMUTE_TRIAL_CACHE", "8"))
LOADS = {"splits": 0}  # splits this worker process loaded (and placed) from the store


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def split_loads() -> int:
    """How many splits this worker process has loaded so far (each trial reports it)."""
    return LOADS["splits"]


def _probe_data(spec: TrialSpec, split: str):
    """A split as ``(ProbeData, check)``, from this worker's small LRU of loaded splits
    (placed by ``probes.resident.place``: resident on the device or streamed); ``check()`` raises :class:`StoreEntryLost` once the mapped files changed
    (rewritten or damaged in place since they were verified)."""
    from orchestrator.store import ChecksumError, EmbeddingStore

    if split == "train":  # extra training splits (BirdSet's mixup variants) train alongside
        keys = [spec.keys["train"], *(k for s, k in spec.keys.items() if s.startswith("train_"))]
    else:
        keys = [spec.keys[split]]
    import torch

    from probes.resident import default_budget, place, placement_of, split_bytes

    device = torch.device(_device(spec.device))
    cache_key = (spec.store_url, spec.task, repr(keys), str(device), spec.placement)
    if cache_key in _CACHE:
        data, loaded, identity = _CACHE[cache_key]
        if loaded.identity() == identity:  # not rewritten or damaged since it was verified
            _CACHE.move_to_end(cache_key)
            return data, _checker(spec, split, loaded, identity)
        del _CACHE[cache_key]
    store = EmbeddingStore(spec.store_url)
    try:
        loaded = store.load_many(keys) if len(keys) > 1 else store.load(keys[0])
    except FileNotFoundError as err:
        raise StoreEntryLost(
            f"{MISSING_ON_NODE} {_node_ip()} (this node cannot see it in {spec.store_url}): "
            f"{err} The driver recomputes the entry and reruns this trial (study {spec.study_id})."
        ) from err
    except ChecksumError as err:
        raise StoreEntryLost(
            f"{err} The driver recomputes the entry and reruns this trial (study {spec.study_id})."
        ) from err
    # placed once per worker (resident on the device, or streamed); the integrity checks
    # keep watching the placed copy's source files
    held = sum(split_bytes(d, placement_of(d)) for d, _, _ in _CACHE.values()
               if placement_of(d) in ("fp16", "fp32"))  # fmt: skip
    budget = max(0, default_budget(device) - held)
    data = place(loaded.to_probe_data(spec.task), spec.placement, device, budget)
    LOADS["splits"] += 1
    identity = loaded.identity()
    _CACHE[cache_key] = (data, loaded, identity)
    while len(_CACHE) > CACHE_SPLITS:
        _CACHE.popitem(last=False)
    return data, _checker(spec, split, loaded, identity)


MISSING_ON_NODE = "store entry missing on Ray node"


def _node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address() if ray.is_initialized() else "(this machine)"


def _checker(spec: TrialSpec, split: str, loaded, identity):
    def check() -> None:
        if loaded.identity() != identity:
            _CACHE.clear()  # cheap to reload; never train on a changed map again
            raise StoreEntryLost(
                f"store entry {loaded.key.relpath} ({split}) changed on disk while this trial "
                f"read it; the driver verifies (and if need be recomputes) it and reruns this "
                f"trial (study {spec.study_id})."
            )

    return check


def probe_file(config_index: int, seed: int) -> str:
    return f"config-{config_index}-seed-{seed}.pt"


def _save_probe(
    spec: TrialSpec,
    probe,
    config_index: int,
    seed: int,
    params: dict[str, Any],
) -> None:
    """Write the trained probe to ``<spec.probe_dir>/config-<i>-seed-<s>.pt``."""
    import torch

    meta = {
        **spec.meta,
        "study_id": spec.study_id,
        "seed": seed,
        "config": dict(params),
        "config_index": config_index,
    }
    from probes.checkpoint import probe_record

    record = probe_record(probe, meta)
    target = f"{spec.probe_dir.rstrip('/')}/{probe_file(config_index, seed)}"
    if "://" in target:
        import fsspec

        with fsspec.open(target, "wb") as handle:
            torch.save(record, handle)
        return
    os.makedirs(spec.probe_dir, exist_ok=True)
    tmp = f"{target}.{os.getpid()}.tmp"
    torch.save(record, tmp)
    os.replace(tmp, target)


REPORT_SECONDS = 10.0  # a pack reports what it did at least this often (and when it ends)


class _Pruned(Exception):
    """A search trial fell below a rung's cutoff: it stops after reporting that epoch."""


def tune_trainable(config: dict[str, Any], specs: dict[str, TrialSpec]) -> None:
    """What the driver hands Tune (with ``tune.with_parameters(..., specs=...)``): a pack of
    trials (``config["pack"]``), or one trial. It lives here, not in the driver's module, so
    that a trial actor imports only this light module when it starts (the driver's imports
    Optuna, SciPy and polars: ~2.5 s per new actor on a small machine)."""
    if "pack" in config:
        run_pack(config["pack"], specs)
    else:
        run_trial(config, specs[config["study"]])


def run_pack(items: list[dict[str, Any]], specs: dict[str, TrialSpec], report=None) -> None:
    """Run several short trials back to back in one Tune trial (``orchestrator/schedule_tune.py``
    packs them so a slot is not idle between tiny trials).

    What happens is sent as events (``start``, ``epoch`` with the epoch's report, ``done``
    with the trial's status, error and seconds) in one ``report`` every ``REPORT_SECONDS``,
    at once when the driver must decide a rung (``item["rungs"] is None``: async mode), and
    when the pack ends. A trial's error fails that trial only; a lost store entry ends the
    pack (its events sent first) so the driver recomputes the entry and reruns the rest.
    """
    import traceback

    if report is None:
        from ray import tune

        report = tune.report
    events: list[dict[str, Any]] = []
    last = [time.monotonic(), math.nan]  # last report time, last validation score seen

    def flush(force: bool = False) -> None:
        if events and (force or time.monotonic() - last[0] >= REPORT_SECONDS):
            report({"events": list(events), "val_score": last[1]})
            events.clear()
            last[0] = time.monotonic()

    for item in items:
        key, rungs = item["key"], item.get("rungs", [])
        decided = {} if rungs is None else {int(r): float(c) for r, c in rungs}
        events.append({"event": "start", "key": key, "time": time.time()})
        started = time.monotonic()

        driver_rungs = rungs is None and item.get("stage") == "search"

        def emit(epoch_report: dict[str, Any], key=key, now=driver_rungs) -> None:
            events.append({"event": "epoch", "key": key, **epoch_report})
            last[1] = epoch_report.get("val_score", math.nan)
            flush(force=now)  # async: the driver's rung decision needs it now

        status, error = "ok", ""
        try:
            run_trial(item, specs[item["study"]], emit=emit, cutoffs=decided)
        except StoreEntryLost:
            flush(force=True)  # the driver learns which trial lost it (and what ran before)
            raise
        except Exception:  # noqa: BLE001 -- this trial fails (a NaN loss, a bug, ...); the pack goes on
            status, error = "error", traceback.format_exc()[-4000:]
        events.append({"event": "done", "key": key, "status": status, "error": error,
                       "seconds": time.monotonic() - started, "time": time.time()})  # fmt: skip
        flush()
    flush(force=True)


def run_trial(
    config: dict[str, Any],
    spec: TrialSpec,
    emit=None,
    cutoffs: dict[int, float] | None = None,
) -> None:
    """One trial: ``emit`` (default ``ray.tune.report``) gets each epoch's report. With
    ``cutoffs`` (rung epoch -> score), a search trial below a rung's cutoff stops after that
    epoch's report (the driver's own decision, made early: see ``StudyState.rung_plan``)."""
    import torch

    from probes import TrainConfig, create_probe, evaluate, fit
    from probes.resident import placement_of
    from probes.train import resolve_precision

    if emit is None:
        from ray import tune

        emit = tune.report
    cutoffs = cutoffs or {}
    params, seed = resolve_params(config, spec)
    stage = config.get("stage", spec.stage)
    train_kw, probe_kw = split_params(params)
    loaded = {split: _probe_data(spec, split) for split in ("train", *EVAL_SPLITS)}
    data = {split: pair[0] for split, pair in loaded.items()}
    checks = [pair[1] for pair in loaded.values()]
    embed_dim = int(data["train"].tokens.shape[-1])
    torch.manual_seed(seed)
    init = {
        "embed_dim": embed_dim,
        "num_classes": spec.num_classes,
        **spec.probe_hparams,
        **probe_kw,
    }
    probe = create_probe(spec.probe, **init)
    device = _device(spec.device)
    precision = resolve_precision(spec.precision, device)
    placed = placement_of(data["train"])
    train_config = TrainConfig(
        precision=precision,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        warmup_epochs=spec.warmup_epochs,
        seed=seed,
        device=device,
        **train_kw,
    )
    started = time.monotonic()

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        for check in checks:  # an epoch read from maps that changed under it is not reported
            check()
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
        if stage == "final" and epoch == spec.epochs:
            test = evaluate(probe, data["test"], spec.batch_size, device, precision)
            for check in checks:
                check()
            report.update(_percent(test, "test"))
            report["train_seconds"] = time.monotonic() - started
        report["seed"] = seed
        report["device"] = (
            torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"
        )
        report["precision"] = precision
        report["placement"] = placed
        report["split_loads"] = split_loads()  # this worker's loads so far (data affinity)
        report["worker"] = _worker()
        emit(report)
        if (
            stage == "search"
            and epoch in cutoffs
            and not (report.get("val_score", math.nan) >= cutoffs[epoch])
        ):
            raise _Pruned  # below the rung's cutoff (a NaN score is below every cutoff)

    try:
        fit(probe, data["train"], data["valid"], train_config, on_epoch=on_epoch)
    except _Pruned:
        return
    if stage == "final" and spec.probe_dir:
        _save_probe(spec, probe, int(config.get("config_index", -1)), seed, params)
