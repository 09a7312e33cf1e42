"""The Kubernetes manifests validate against the KubeRay v1.7 CRD schemas (shared/kuberay-crds)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CRDS = ROOT.parent / "shared" / "kuberay-crds"
MANIFESTS = sorted((ROOT / "k8s").glob("*.yaml"))
KIND_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}


def _schema(kind: str) -> dict:
    crd = yaml.safe_load((CRDS / KIND_FILES[kind]).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return version["schema"]["openAPIV3Schema"]


@pytest.mark.skipif(not CRDS.exists(), reason=f"KubeRay CRDs not found at {CRDS}")
@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_is_valid_kuberay(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, f"{path} holds no object"
    for doc in docs:
        assert doc["apiVersion"] == "ray.io/v1"
        jsonschema.validate(doc, _schema(doc["kind"]))


@pytest.mark.skipif(not CRDS.exists(), reason=f"KubeRay CRDs not found at {CRDS}")
def test_validation_catches_a_broken_manifest():
    doc = yaml.safe_load((ROOT / "k8s" / "rayjob-full-benchmark.yaml").read_text())
    del doc["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"]
    with pytest.raises(jsonschema.ValidationError, match="groupName"):
        jsonschema.validate(doc, _schema("RayJob"))


def test_rayjob_runs_a_registered_sweep():
    from orchestrator.config import list_sweeps

    doc = yaml.safe_load((ROOT / "k8s" / "rayjob-full-benchmark.yaml").read_text())
    words = doc["spec"]["entrypoint"].split()
    assert words[:3] == ["python", "-m", "orchestrator.sweep"]
    assert words[3] in list_sweeps()
