"""A task no node can run is noticed while the sweep runs (a real local Ray, no GPU)."""

from __future__ import annotations

import threading

import pytest

from orchestrator.preflight import InfeasibleWatch

pytestmark = pytest.mark.integration


def test_a_pending_gpu_task_is_reported_with_the_cluster_resources():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=1, num_gpus=0, include_dashboard=False,
             log_to_driver=False)  # fmt: skip
    try:
        ref = ray.remote(num_gpus=1)(lambda: 1).remote()
        said: list[str] = []
        fired = threading.Event()

        def on_infeasible(message: str) -> None:
            said.append(message)
            fired.set()

        with InfeasibleWatch(timeout_s=3, interval_s=0.5, on_infeasible=on_infeasible):
            assert fired.wait(120), "the infeasible task was never reported"
        assert "1 x {CPU: 1, GPU: 1}" in said[0] and "cluster nodes: {CPU: 1}" in said[0]
        ray.cancel(ref, force=True)
    finally:
        ray.shutdown()
