"""Trials per GPU from measured memory, for ``ray.gpus_per_trial: auto`` (#17).

Why: a static ``gpus_per_trial: 0.25`` either leaves most of a large GPU empty (a linear probe
at the as20k shape needs a few hundred MB) or runs out of memory (several workers each holding
a resident split). Each trial worker is its own process, so each pays a CUDA context, its
resident splits (``probes/resident.py``: fp16 train + valid + test, or nothing resident when
they exceed half the GPU and stream) and the probe's peak training memory at the study's
shape. ``benchmarks/gpu_data.py --device cuda --write-costs`` measures the peaks and writes
``gpu_memory`` into ``benchmarks/costs.json``; without that table ``auto`` falls back to the old
static 0.25 and says so. Pure arithmetic: no torch, so ``--dry-run`` stays fast.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

logger = logging.getLogger(__name__)

FALLBACK_GPUS_PER_TRIAL = 0.25  # the static default before #17, used when nothing is measured
HEADROOM = 0.9  # fraction of the GPU the trials may fill (allocator fragmentation, spikes)
MAX_TRIALS_PER_GPU = 8  # beyond this the probe steps of small probes contend for the SMs
FP16 = 2


@dataclass(frozen=True)
class WorkerMemory:
    """What one trial worker holds on its GPU, in bytes."""

    context: int  # CUDA context and allocator overhead of a process
    resident: int  # its resident splits (0 when they stream)
    peak: int  # the probe's peak training memory at the study's shape

    @property
    def total(self) -> int:
        return self.context + self.resident + self.peak


def trials_per_gpu(
    gpu_bytes: int,
    worker: WorkerMemory,
    headroom: float = HEADROOM,
    max_trials: int = MAX_TRIALS_PER_GPU,
) -> int:
    """How many such workers fit on one GPU (at least 1: a trial that does not fit alone
    still gets a whole GPU, and streams its splits)."""
    if gpu_bytes <= 0 or worker.total <= 0:
        raise ValueError(f"need gpu_bytes > 0 and worker memory > 0, got {gpu_bytes}, {worker}.")
    return max(1, min(max_trials, math.floor(headroom * gpu_bytes / worker.total)))


def resident_bytes(clips: dict[str, int], tokens: int, dim: int, gpu_bytes: int) -> int:
    """fp16 bytes of a study's splits resident on the GPU; 0 when they exceed half of it
    (``probes.resident`` streams them then, holding a few batches only)."""
    total = sum(clips.get(s, 0) for s in ("train", "valid", "test")) * (tokens + 1) * dim * FP16
    return 0 if total > gpu_bytes // 2 else total


def shape_of(num_classes: int, costs: dict) -> str:
    """The measured shape a study prices at (as in ``orchestrator.cost``)."""
    return "as20k" if num_classes >= int(costs.get("many_classes", 100)) else "c10"


def size_gpus_per_trial(studies: list[dict], costs: dict) -> tuple[float, str]:
    """``ray.gpus_per_trial`` for a sweep: the share the most demanding study needs.

    ``studies``: one dict per (encoder, dataset, probe) with ``probe``, ``num_classes``,
    ``clips`` (per split), ``tokens`` and ``dim``. Returns the share and a sentence saying
    how it was sized (for the plan and the log)."""
    table = costs.get("gpu_memory") or {}
    peaks = table.get("peak_bytes") or {}
    gpu_bytes = int(table.get("gpu_bytes", 0))
    if not peaks or gpu_bytes <= 0:
        return FALLBACK_GPUS_PER_TRIAL, (
            "no measured GPU memory in benchmarks/costs.json (gpu_memory): ray.gpus_per_trial="
            f"auto uses {FALLBACK_GPUS_PER_TRIAL}; measure it with benchmarks/gpu_data.py "
            "--device cuda --write-costs"
        )
    worst, worst_study = 0, ""
    for study in studies:
        shape = shape_of(int(study["num_classes"]), costs)
        peak = peaks.get(shape, {}).get(study["probe"])
        if peak is None:
            peak = max(max(p.values()) for p in peaks.values())  # unmeasured: the largest one
        # peaks are measured at probe_step_tokens tokens per clip: scale to the study's
        peak = int(peak * study["tokens"] / int(costs.get("probe_step_tokens", 512)))
        need = int(table.get("context_bytes", 0)) + peak
        need += resident_bytes(study["clips"], study["tokens"], study["dim"], gpu_bytes)
        if need > worst:
            worst, worst_study = need, f"{study['probe']} at {shape}"
    if not worst:
        return FALLBACK_GPUS_PER_TRIAL, "no study to size: ray.gpus_per_trial=auto uses 0.25"
    per_gpu = trials_per_gpu(gpu_bytes, WorkerMemory(0, 0, worst))
    return 1.0 / per_gpu, (
        f"{per_gpu} trials per GPU ({worst / 1e9:.2f} GB per trial worker for {worst_study}, "
        f"of {gpu_bytes / 1e9:.0f} GB measured on {table.get('device', 'a GPU')})"
    )


def sweep_studies(encoders, datasets, probes, costs: dict) -> list[dict]:
    """The study shapes of a sweep (its encoder, dataset and probe choices) for
    :func:`size_gpus_per_trial`, with the token counts and clip counts ``orchestrator.cost``
    prices with."""
    from backbones import BACKBONES
    from orchestrator.cost import EMBED_DIM, clip_counts
    from orchestrator.datasets import get_dataset

    out = []
    for ds in datasets:
        spec = get_dataset(ds.name, source=ds.source, **ds.options)
        clips = clip_counts(spec, costs)
        for enc in encoders:
            backbone = BACKBONES.get(enc.name).spec
            dim = EMBED_DIM.get(str(enc.overrides.get("size", "base")), backbone.embed_dim)
            rows, cols = backbone.grid_10s
            tokens = max(1, math.ceil(rows * spec.clip_seconds / 10.0)) * cols
            for probe in probes:
                out.append(
                    {
                        "probe": probe.name,
                        "num_classes": spec.num_classes,
                        "clips": clips,
                        "tokens": tokens,
                        "dim": dim,
                    }
                )
    return out
