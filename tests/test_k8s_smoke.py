"""The cpu-smoke overlay's commands finish the quickstart against real services, locally.

What KubeRay would run, without Kubernetes: the overlay's environment (its rendered ConfigMap,
only the in-cluster service addresses and pod paths swapped for local ones), a moto S3 standing
in for MinIO, a real ``mlflow server`` with proxied S3 artifacts and a real ``ray start --head``.
The submitter's init containers (the staging step, which creates the bucket, and the wait for
MLflow) and the RayJob entrypoint (shrunk with overrides) run as they are written in the
manifests.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cluster_fixtures import _stop, _wait_http, free_port, start_moto, start_ray_head

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "unmute-bench"
SHRINK = [
    "encoder=[eat]",
    "dataset=[synth_events]",
    "probe=[linear]",
    "dataset.synth_events.options.train_clips=24",
    "dataset.synth_events.options.valid_clips=12",
    "dataset.synth_events.options.test_clips=12",
    "train.batch_size=8",
    "search.trials=2",
    "search.startup_trials=1",
    "search.top_k=1",
    "final.seeds=[0]",
    "train.epochs=2",
]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not any(
            os.access(os.path.join(p, "kubectl"), os.X_OK)
            for p in os.environ.get("PATH", "").split(":")
        ),
        reason="kubectl (for kustomize) is not installed",
    ),
]


def _overlay() -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / "cpu-smoke")],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _container(doc: dict, name: str) -> dict:
    spec = doc["spec"]["template"]["spec"]
    return next(c for c in spec.get("initContainers", []) + spec["containers"] if c["name"] == name)


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    """moto S3 with the bucket, an MLflow server proxying artifacts to it, and a Ray head whose
    processes carry the overlay's pod environment (as KubeRay's head container does)."""
    tmp = tmp_path_factory.mktemp("k8s-smoke")
    docs = _overlay()
    with contextlib.ExitStack() as stack:
        s3 = stack.enter_context(start_moto(bucket="other"))  # the staging step makes BUCKET
        server_env = {**os.environ, **s3, "MLFLOW_S3_ENDPOINT_URL": s3["AWS_ENDPOINT_URL"],
                      "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # fmt: skip
        port = free_port()
        log = stack.enter_context(open(tmp / "mlflow.log", "wb"))
        mlflow = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--workers", "1", "--host", "127.0.0.1",
             "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db",
             "--serve-artifacts", "--artifacts-destination", f"s3://{BUCKET}/mlartifacts"],
            env=server_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        stack.callback(_stop, mlflow, 10)
        _wait_http(f"http://127.0.0.1:{port}/health", 180, mlflow, tmp / "mlflow.log")
        env = _pod_env(docs, tmp, s3, f"http://127.0.0.1:{port}")
        head = stack.enter_context(start_ray_head(num_cpus=2, env=env))
        yield {"tmp": tmp, "docs": docs, "env": {**env, "RAY_ADDRESS": head.address},
               "head": head, "s3": s3, "mlflow": f"http://127.0.0.1:{port}"}  # fmt: skip


def _pod_env(docs, tmp: Path, s3: dict, mlflow: str) -> dict[str, str]:
    """The pods' environment: the overlay's ConfigMap + Secret, local addresses and paths."""
    data = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    local = {
        "AWS_ENDPOINT_URL": s3["AWS_ENDPOINT_URL"],
        "MLFLOW_S3_ENDPOINT_URL": s3["AWS_ENDPOINT_URL"],
        "MLFLOW_TRACKING_URI": mlflow,
        "UNMUTE_NODE_CACHE": str(tmp / "node-cache" / "store"),
        "UNMUTE_CACHE": str(tmp / "node-cache"),
        "UNMUTE_MIRROR": str(tmp / "node-cache" / "mirror"),
    }
    assert set(local) <= set(data), "the overlay no longer sets what the test swaps"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("UNMUTE_", "MLFLOW_"))}
    base.pop("RAY_ADDRESS", None)
    secret = {k: s3[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    return {**base, **data, **local, **secret, "PYTHONPATH": str(ROOT)}


def _run_container(container: dict, env: dict, cwd: Path, timeout: float):
    command = container["command"] + container.get("args", [])
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_cpu_smoke_overlay_finishes_the_quickstart(services):
    import s3fs

    docs, env = services["docs"], services["env"]
    work = services["tmp"] / "home"
    work.mkdir()
    fs = s3fs.S3FileSystem(
        key="testing",
        secret="testing",
        client_kwargs={"endpoint_url": services["s3"]["AWS_ENDPOINT_URL"]},
    )

    job = next(d for d in docs if d["kind"] == "RayJob")
    submitter = {"spec": {"template": job["spec"]["submitterPodTemplate"]}}
    assert not fs.exists(BUCKET)
    staged = _run_container(_container(submitter, "stage"), env, work, timeout=600)
    assert staged.returncode == 0, staged.stdout + staged.stderr
    fs.invalidate_cache()
    assert fs.exists(BUCKET), "the staging step creates the bucket"
    waiting = _run_container(_container(submitter, "wait-for-mlflow"), env, work, timeout=300)
    assert waiting.returncode == 0, waiting.stdout + waiting.stderr

    # What KubeRay's submitter does: `ray job submit` of the entrypoint to the head's dashboard;
    # the driver runs on the head with the head's (the pod's) environment.
    words = job["spec"]["entrypoint"].split()
    assert words[:4] == ["python", "-m", "orchestrator.sweep", "quickstart"]
    head = services["head"]
    submitted = subprocess.run(
        ["ray", "job", "submit", "--address", head.dashboard, "--no-wait", "--submission-id",
         "k8s-smoke", "--", *words, *SHRINK],
        env=head.env, cwd=work, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    status, logs = head.wait("k8s-smoke", timeout=2400)
    assert status == "SUCCEEDED", logs[-6000:]

    import mlflow

    client = mlflow.MlflowClient(services["mlflow"])
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    assert runs and all(r.info.status == "FINISHED" for r in runs), [r.info.status for r in runs]
    assert fs.ls(f"{BUCKET}/store"), "token maps are on S3"
    assert fs.ls(f"{BUCKET}/tune"), "Ray Tune state is on S3"
    assert fs.ls(f"{BUCKET}/mlartifacts"), "MLflow artifacts went through the server to S3"
    assert fs.exists(f"{BUCKET}/outputs/quickstart/results.csv"), "results live on S3"
