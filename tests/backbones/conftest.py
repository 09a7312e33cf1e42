"""Shared fixtures for the backbone tests: one thread, deterministic tiny inputs."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def clips() -> torch.Tensor:
    """Two 16 kHz clips: a 10 s noise+tone clip and a 1 s clip padded to 10 s."""
    g = torch.Generator().manual_seed(0)
    t = torch.arange(160_000) / 16_000
    wave = 0.05 * torch.randn(2, 160_000, generator=g) + 0.2 * torch.sin(2 * torch.pi * 440 * t)
    wave[1, 16_000:] = 0.0
    return wave
