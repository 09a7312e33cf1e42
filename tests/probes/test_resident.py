"""Resident and streamed splits (#17): fp32 results identical to the memory-map path, a budget
that forces streaming, bf16 autocast within seed noise of fp32."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from probes import ProbeData, TrainConfig, create_probe, fit
from probes.resident import place, placement_of, resolve_placement, split_bytes
from probes.train import predict, resolve_precision

N, T, D, C = 48, 6, 16, 5


def _split(tmp_path, name: str, n: int, seed: int) -> ProbeData:
    """A learnable multilabel split whose tokens are an fp16 memory map, like the store's."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, C)) < 0.3).astype(np.float32)
    centers = np.random.default_rng(99).normal(size=(C, D)).astype(np.float32)
    tokens = rng.normal(size=(n, T, D)).astype(np.float32) + (labels @ centers)[:, None, :]
    path = tmp_path / f"{name}.f16"
    mm = np.memmap(path, dtype=np.float16, mode="w+", shape=tokens.shape)
    mm[:] = tokens
    mm.flush()
    ro = np.memmap(path, dtype=np.float16, mode="r", shape=tokens.shape)
    return ProbeData(tokens=ro, labels=labels, task="multilabel")


@pytest.fixture
def splits(tmp_path):
    return _split(tmp_path, "train", N, 0), _split(tmp_path, "valid", 24, 1)


def _fit(probe_name: str, train, val, **config):
    probe = create_probe(probe_name, embed_dim=D, num_classes=C)
    config = {"epochs": 3, "batch_size": 8, **config}
    cfg = TrainConfig(**config)
    result = fit(probe, train, val, cfg)
    return result, predict(probe, val, batch_size=8)


@pytest.mark.parametrize("probe_name", ["linear", "mhca"])
def test_fp32_results_are_identical_on_every_placement(splits, probe_name):
    train, val = splits
    cpu = torch.device("cpu")
    old, old_logits = _fit(probe_name, train, val)
    for placement in ("fp16", "fp32", "stream"):
        placed_train = place(train, placement, cpu, budget=1 << 40)
        placed_val = place(val, placement, cpu, budget=1 << 40)
        assert placement_of(placed_train) == placement
        new, new_logits = _fit(probe_name, placed_train, placed_val)
        assert new.history == old.history, placement  # every loss and score, exactly
        assert new_logits.tobytes() == old_logits.tobytes(), placement


def test_a_split_over_the_budget_streams(splits):
    train, _ = splits
    cpu = torch.device("cpu")
    need = split_bytes(train, "fp16")
    assert need == N * T * D * 2
    assert resolve_placement("fp16", train, cpu, budget=need) == "fp16"
    assert resolve_placement("fp16", train, cpu, budget=need - 1) == "stream"
    assert resolve_placement("fp32", train, cpu, budget=need) == "stream"  # fp32: twice
    assert placement_of(place(train, "fp16", cpu, budget=0)) == "stream"
    with pytest.raises(ValueError, match="placement='gpu'.*auto, fp16, fp32, stream, memmap"):
        resolve_placement("gpu", train, cpu)


def test_precision_auto_is_fp32_on_cpu_and_bad_values_are_named():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="precision='fp8'.*fp32, bf16, auto"):
        TrainConfig(precision="fp8")


def test_bf16_autocast_scores_are_within_seed_noise_of_fp32(splits):
    train, val = splits
    runs = {
        (precision, seed): _fit(
            "linear", train, val, seed=seed, precision=precision, epochs=15, lr=1e-2
        )
        for precision in ("fp32", "bf16")
        for seed in range(3)
    }
    fp32 = np.array([runs["fp32", s][0].final_val["score"] for s in range(3)])
    bf16 = np.array([runs["bf16", s][0].final_val["score"] for s in range(3)])
    assert fp32.mean() > 0.5  # the case is learnable: a real score, not chance
    noise = max(fp32.max() - fp32.min(), 0.01)  # the spread over seeds (at least 1 point)
    assert abs(bf16.mean() - fp32.mean()) <= noise, (fp32, bf16)
    losses = {p: runs[p, 0][0].history[-1]["loss"] for p in ("fp32", "bf16")}
    assert losses["fp32"] != losses["bf16"]  # bf16 autocast really ran
