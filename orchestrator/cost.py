"""The price of a plan: GPU-hours, store size and wall time, before anything runs.

Built from measured unit costs (``benchmarks/costs.json``: seconds per clip per encoder,
milliseconds per probe training step, and the device they were measured on) and clip counts
(the table's approximate source sizes, or a synthetic dataset's own options). Pure arithmetic:
no torch, no Ray, so ``--dry-run`` stays fast.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

# A checkout's benchmarks/costs.json, else the copy an installed wheel carries (setup.py).
_CHECKOUT_COSTS = Path(__file__).resolve().parent.parent / "benchmarks" / "costs.json"
COSTS = (
    _CHECKOUT_COSTS if _CHECKOUT_COSTS.exists() else Path(__file__).resolve().parent / "costs.json"
)
EMBED_DIM = {"base": 768, "tiny": 64}
FP16 = 2
EVAL_FRACTION = 1 / 3  # a forward-only evaluation step costs about a third of a training step


def load_costs(path: Path = COSTS) -> dict:
    """The unit-cost table ({} when the file is missing)."""
    return json.loads(path.read_text()) if path.exists() else {}


def clip_counts(spec, costs: dict) -> dict[str, int]:
    """Clips per split of a dataset spec: its own options when generated, else the table."""
    opts = spec.opts
    if spec.synthetic:
        counts = {s: int(opts.get(f"{s}_clips", 0)) for s in ("train", "valid", "test")}
    else:
        counts = dict(costs.get("clips", {}).get(spec.name, {}))
    limit = opts.get("max_clips")
    if limit:
        counts = {k: min(int(v), int(limit)) for k, v in counts.items()}
    counts.update({s: counts.get("train", 0) for s in spec.extra_splits})
    return counts


def asha_epochs(epochs: int, grace: int, reduction: int) -> float:
    """Expected epochs of one search trial under ASHA (rungs grace * reduction**k)."""
    rungs = []
    r = grace
    while r < epochs:
        rungs.append(r)
        r *= reduction
    total, previous = 0.0, 0
    for k, rung in enumerate([*rungs, epochs]):
        total += (rung - previous) / reduction**k
        previous = rung
    return total


@dataclass(frozen=True)
class Price:
    extract_gpu_hours: float
    trial_gpu_hours: float
    store_bytes: int
    wall_hours: float
    gpus: float
    device: str
    missing: tuple[str, ...]

    def lines(self) -> list[str]:
        out = [
            f"price (unit costs measured on {self.device}; benchmarks/costs.json):",
            f"  extraction:  {self.extract_gpu_hours:,.2f} GPU-hours",
            f"  trials:      {self.trial_gpu_hours:,.2f} GPU-hours (search under ASHA + final)",
            f"  store:       {self.store_bytes / 1e9:,.1f} GB of fp16 token maps",
        ]
        if self.gpus:
            out.append(
                f"  wall time:   {self.wall_hours:,.1f} h on {self.gpus:g} GPU(s), "
                "if the scheduler keeps them busy"
            )
        else:
            out.append("  wall time:   no GPU visible (pass --gpus N to estimate one)")
        if self.missing:
            out.append(f"  not priced (no unit cost): {', '.join(self.missing)}")
        return out


def price(cfg, plan, gpus: float, costs: dict | None = None) -> Price:
    """Price ``plan`` (a :class:`orchestrator.plan.Plan`) of ``cfg`` on ``gpus`` GPUs."""
    from backbones import BACKBONES
    from orchestrator.datasets import get_dataset

    costs = load_costs() if costs is None else costs
    per_clip = costs.get("extract_seconds_per_10s_clip", {})
    steps = costs.get("probe_step_ms", {})
    step_batch = int(costs.get("probe_step_batch", 128))
    step_tokens = int(costs.get("probe_step_tokens", 512))
    overhead = float(costs.get("trial_overhead_seconds", 0.0))
    data_s = float(costs.get("probe_data_ms_per_clip", 0.0)) / 1000  # read, cast, copy a clip
    missing: set[str] = set()
    specs = {ds.name: get_dataset(ds.name, source=ds.source, **ds.options) for ds in cfg.datasets}
    counts = {name: clip_counts(spec, costs) for name, spec in specs.items()}
    extract_s = store = 0.0
    tokens: dict[tuple[str, str], int] = {}
    for enc in cfg.encoders:
        spec = BACKBONES.get(enc.name).spec
        dim = EMBED_DIM.get(str(enc.overrides.get("size", "base")), spec.embed_dim)
        for name, ds in specs.items():
            seconds = ds.clip_seconds
            n = sum(counts[name].values())
            if enc.name in per_clip:
                extract_s += n * per_clip[enc.name] * max(seconds, 1.0) / 10.0
            else:
                missing.add(f"extraction of {enc.name}")
            rows, cols = spec.grid_10s
            tokens[(enc.name, name)] = max(1, math.ceil(rows * seconds / 10.0)) * cols
            store += n * (tokens[(enc.name, name)] * dim + dim) * FP16
    search_epochs = asha_epochs(
        cfg.train.epochs, cfg.search.grace_epochs, cfg.search.reduction_factor
    )
    trial_s = 0.0
    for study in plan.studies:
        ds = specs[study.dataset.name]
        shape = "as20k" if ds.num_classes >= int(costs.get("many_classes", 100)) else "c10"
        ms = steps.get(shape, {}).get(study.probe.name)
        if ms is None:
            missing.add(f"probe {study.probe.name}")
            continue
        ratio = tokens[(study.encoder.name, ds.name)] / step_tokens
        step_s = ms / 1000 * ratio / step_batch  # the probe's own step, per clip
        n = counts[ds.name]
        epoch_s = (step_s + data_s * ratio) * n.get("train", 0) + (
            EVAL_FRACTION * step_s + data_s * ratio
        ) * n.get("valid", 0)
        test_s = (EVAL_FRACTION * step_s + data_s * ratio) * n.get("test", 0)
        trial_s += cfg.search.trials * (search_epochs * epoch_s + overhead)
        finals = cfg.search.top_k * len(cfg.seeds)
        trial_s += finals * (cfg.train.epochs * epoch_s + test_s + overhead)
    extract_h, trial_h = extract_s / 3600, trial_s / 3600
    return Price(
        extract_gpu_hours=extract_h,
        trial_gpu_hours=trial_h,
        store_bytes=int(store),
        wall_hours=(extract_h + trial_h) / gpus if gpus else 0.0,
        gpus=gpus,
        device=str(costs.get("device", "unknown device")),
        missing=tuple(sorted(missing)),
    )
