"""Trials per GPU from a measured-memory table (#17; the measurement itself needs CUDA:
benchmarks/gpu_data.py --device cuda --write-costs writes the table these tests stand in for)."""

from __future__ import annotations

import pytest

from orchestrator.config import ConfigError, load
from orchestrator.gpu_pack import (
    FALLBACK_GPUS_PER_TRIAL,
    WorkerMemory,
    resident_bytes,
    size_gpus_per_trial,
    trials_per_gpu,
)

GB = 10**9
# the shape of a measured table (numbers made up for the arithmetic, not GPU measurements)
TABLE = {
    "probe_step_tokens": 512,
    "many_classes": 100,
    "gpu_memory": {
        "device": "test GPU",
        "gpu_bytes": 80 * GB,
        "context_bytes": GB // 2,
        "peak_bytes": {"as20k": {"linear": GB // 4, "protobin": 3 * GB}, "c10": {"linear": GB}},
    },
}


def _study(probe: str, classes: int, train: int, tokens: int = 512) -> dict:
    clips = {"train": train, "valid": train // 10, "test": train // 10}
    return {"probe": probe, "num_classes": classes, "clips": clips, "tokens": tokens, "dim": 768}


def test_trials_per_gpu_fill_the_gpu_without_exceeding_it():
    assert trials_per_gpu(80 * GB, WorkerMemory(GB, 0, GB)) == 8  # capped: 36 would fit
    assert trials_per_gpu(80 * GB, WorkerMemory(GB // 2, 10 * GB, 3 * GB)) == 5  # 72 GB / 13.5
    assert trials_per_gpu(80 * GB, WorkerMemory(GB, 90 * GB, GB)) == 1  # never 0
    with pytest.raises(ValueError, match="gpu_bytes > 0"):
        trials_per_gpu(0, WorkerMemory(1, 1, 1))


def test_resident_splits_count_once_per_worker_and_huge_ones_stream():
    as20k = resident_bytes({"train": 18500, "valid": 2050, "test": 18900}, 512, 768, 80 * GB)
    assert as20k == (18500 + 2050 + 18900) * 513 * 768 * 2  # ~31 GB fp16: resident
    fsd = resident_bytes({"train": 36796, "valid": 4170, "test": 10231}, 1536, 768, 80 * GB)
    assert fsd == 0  # ~120 GB: streamed, nothing resident


def test_the_most_demanding_study_sizes_the_sweep():
    share, how = size_gpus_per_trial([_study("linear", 527, 1000)], TABLE)
    # 0.5 GB context + 0.25 GB peak + 2200 clips x 513 x 768 x 2 B (1.73 GB) = 2.48 GB -> 29 > 8
    assert share == 1 / 8 and "8 trials per GPU" in how and "test GPU" in how
    share, how = size_gpus_per_trial(
        [_study("linear", 527, 1000), _study("protobin", 527, 18500)], TABLE
    )
    # protobin: 0.5 + 3 + 22,200 clips resident (17.5 GB) = 21.0 GB -> 72 / 21.0 = 3 per GPU
    assert share == 1 / 3 and "protobin at as20k" in how


def test_without_a_measured_table_auto_falls_back_and_says_so():
    share, how = size_gpus_per_trial([_study("linear", 527, 1000)], {})
    assert share == FALLBACK_GPUS_PER_TRIAL and "gpu_data.py --device cuda" in how


def test_explicit_gpus_per_trial_wins_and_bad_values_are_named():
    assert load("quickstart", ["ray.gpus_per_trial=0.5"]).ray.gpus_per_trial == 0.5
    assert load("quickstart", ["ray.gpus_per_trial=auto"]).ray.gpus_per_trial > 0
    with pytest.raises(ConfigError, match="gpus_per_trial='half'.*'auto'"):
        load("quickstart", ["ray.gpus_per_trial=half"])
    with pytest.raises(ConfigError, match="train.precision='fp8'.*fp32, bf16, auto"):
        load("quickstart", ["train.precision=fp8"])


def test_fp32_study_ids_are_the_ones_before_precision_existed():
    import hashlib
    import json
    from dataclasses import asdict

    from orchestrator.plan import settings_fingerprint
    from orchestrator.space import load_space

    cfg = load("quickstart")  # on CPU: precision auto is fp32
    probe = cfg.probes[0]
    old_train = {k: v for k, v in asdict(cfg.train).items() if k not in ("precision", "placement")}
    payload = [old_train, asdict(cfg.search), list(cfg.seeds), load_space(probe.search)]
    before = hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    assert settings_fingerprint(cfg, probe) == before[:12]
    same = load("quickstart", ["train.precision=fp32", "train.placement=memmap"])
    assert settings_fingerprint(same, probe) == before[:12]
    bf16 = load("quickstart", ["train.precision=bf16"])
    assert settings_fingerprint(bf16, probe) != before[:12]
