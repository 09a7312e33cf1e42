"""Test-session settings shared by every test module."""

from __future__ import annotations

import os

import pytest

# Ray 2.60 turns on token auth when a token file exists; local test clusters run without it.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests run on a shared 2-core machine: keep torch to one thread."""
    try:
        import torch
    except ImportError:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
