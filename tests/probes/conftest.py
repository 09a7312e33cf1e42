"""Shared fixtures for the probe tests: one thread, tiny generated data."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def separable_multiclass(
    n: int = 96, tokens: int = 8, dim: int = 16, classes: int = 3, seed: int = 0, draw: int = 0
):
    """Every token of a clip carries its class direction: any pooling can separate it.

    ``seed`` fixes the class centres, ``draw`` the examples (so train and test can differ).
    """
    centers = np.random.default_rng(seed).standard_normal((classes, dim)) * 2.0
    rng = np.random.default_rng([seed, draw + 1])
    labels = rng.integers(0, classes, n)
    x = rng.standard_normal((n, tokens, dim)) * 0.5 + centers[labels][:, None, :]
    return x.astype(np.float16), labels.astype(np.int64), x.mean(axis=1).astype(np.float32)


def localized_events(n: int = 160, tokens: int = 16, seed: int = 0):
    """Two multi-label classes whose token mean is identical with and without the event.

    Every token carries background (dims 4..7 = 1). Class c present: one token gets
    e_{2c} + e_{2c+1}; absent: one token gets e_{2c} and another e_{2c+1}. The mean (and the
    per-dimension max) is the same either way: only a per-token conjunction (a prototype's cosine
    max) sees the class, mean pooling pools all evidence away.
    """
    rng = np.random.default_rng(seed)
    x = np.zeros((n, tokens, 8))
    x[:, :, 4:] = 1.0
    labels = (rng.random((n, 2)) < 0.5).astype(np.float32)
    for i in range(n):
        slots = rng.permutation(tokens)[:4]
        for c in range(2):
            a, b = slots[2 * c], slots[2 * c + 1]
            x[i, a, 2 * c] = 1.0
            x[i, a if labels[i, c] else b, 2 * c + 1] = 1.0
    x += rng.standard_normal(x.shape) * 0.05
    return x.astype(np.float16), labels


@pytest.fixture
def make_separable():
    return separable_multiclass


@pytest.fixture
def make_localized():
    return localized_events
