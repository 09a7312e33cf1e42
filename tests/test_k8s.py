"""The Kubernetes deployment (k8s/, Dockerfile) is valid and consistent, offline.

Overlays are rendered by kustomize (``kubectl kustomize``), every object is validated strictly
against the Kubernetes OpenAPI schemas (kubernetes-validate) and RayCluster / RayJob against the
KubeRay v1.7 CRD schemas from ``$KUBERAY_CRD_DIR`` (default ``../shared/kuberay-crds`` beside the
clone), with unknown fields refused as ``kubectl apply --validate=strict`` does. The consistency
checks catch drift between the image, the manifests, pyproject, the sweeps and the README.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
CRD_DIR = Path(os.environ.get("KUBERAY_CRD_DIR") or ROOT.parent / "shared" / "kuberay-crds")
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
RAY_KINDS = set(CRD_FILES)
K8S_VERSION = "1.32.0"  # the oldest Kubernetes the manifests target (KubeRay v1.7 supports it)
OVERLAYS = {"cpu-smoke": "quickstart", "gpu": "full_benchmark"}
KUSTOMIZATIONS = ["namespace", "base", "base/cluster", *(f"overlays/{o}" for o in OVERLAYS)]
PLACEHOLDER = "REPLACE_ME"
# Kubernetes objects, not kustomize inputs (kustomization files, JSON patches).
MANIFEST_FILES = sorted(
    p
    for p in K8S.rglob("*.yaml")
    if p.name != "kustomization.yaml"
    and all(isinstance(d, dict) and "kind" in d for d in yaml.safe_load_all(p.read_text()) if d)
)

needs_crds = pytest.mark.skipif(
    not CRD_DIR.is_dir(), reason=f"KubeRay CRDs not found at {CRD_DIR} (set KUBERAY_CRD_DIR)"
)


def _kustomize_cmd() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


needs_kustomize = pytest.mark.skipif(
    _kustomize_cmd() is None, reason="neither kubectl nor kustomize is installed"
)


@functools.cache
def render(kustomization: str) -> tuple[dict, ...]:
    """The objects kustomize renders from ``k8s/<kustomization>``."""
    cmd = [*_kustomize_cmd(), str(K8S / kustomization)]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def _one(docs, kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _strict(schema):
    """Refuse unknown fields, as the API server's strict field validation does."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_validator(kind: str) -> jsonschema.protocols.Validator:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are 1 MB of YAML
    crd = yaml.load((CRD_DIR / CRD_FILES[kind]).read_text(), Loader=loader)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    schema = _strict(version["schema"]["openAPIV3Schema"])
    return jsonschema.validators.validator_for(schema)(schema)


def _cluster_spec(doc: dict) -> dict:
    return doc["spec"]["rayClusterSpec"] if doc["kind"] == "RayJob" else doc["spec"]


def _pod_templates(doc: dict) -> list[tuple[str, dict]]:
    """(role, pod template) of every pod a RayCluster / RayJob creates."""
    spec = _cluster_spec(doc)
    pods = [("head", spec["headGroupSpec"]["template"])]
    pods += [(g["groupName"], g["template"]) for g in spec["workerGroupSpecs"]]
    if doc["kind"] == "RayJob" and "submitterPodTemplate" in doc["spec"]:
        pods.append(("submitter", doc["spec"]["submitterPodTemplate"]))
    return pods


def validate(doc: dict) -> None:
    """Strict schema validation of one object (Kubernetes kinds and KubeRay kinds)."""
    import kubernetes_validate

    if doc["kind"] in RAY_KINDS:
        crd_validator(doc["kind"]).validate(doc)
        for role, template in _pod_templates(doc):  # the CRD leaves pod specs loosely typed
            pod = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": role}}
            kubernetes_validate.validate({**pod, "template": template}, K8S_VERSION, strict=True)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _all_rendered():
    return [(k, d) for k in KUSTOMIZATIONS for d in render(k)]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _dockerfile_args() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, flags=re.MULTILINE))


# --- schemas ---------------------------------------------------------------------------------


@needs_crds
@pytest.mark.parametrize(
    "path", MANIFEST_FILES, ids=[str(p.relative_to(K8S)) for p in MANIFEST_FILES]
)
def test_every_manifest_file_validates_strictly(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, f"{path} holds no object"
    for doc in docs:
        validate(doc)


@needs_crds
@needs_kustomize
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_rendered_object_validates_strictly(kustomization):
    docs = render(kustomization)
    assert docs
    for doc in docs:
        validate(doc)


@needs_crds
def test_validation_catches_broken_manifests():
    import kubernetes_validate

    job = yaml.safe_load((K8S / "base" / "rayjob.yaml").read_text())
    missing = copy.deepcopy(job)
    del missing["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"]
    with pytest.raises(jsonschema.ValidationError, match="groupName"):
        validate(missing)
    typo = copy.deepcopy(job)
    typo["spec"]["rayClusterSpec"]["authOption"] = {"mode": "token"}
    with pytest.raises(jsonschema.ValidationError, match="authOption"):
        validate(typo)
    pod_typo = copy.deepcopy(job)
    head = pod_typo["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    head["containers"][0]["envFrm"] = head["containers"][0].pop("envFrom")
    with pytest.raises((jsonschema.ValidationError, kubernetes_validate.ValidationError)) as err:
        validate(pod_typo)
    assert "envFrm" in str(err.value)


# --- consistency -----------------------------------------------------------------------------


def test_ray_and_python_versions_agree():
    project = _pyproject()
    ray_pin = next(d for d in project["project"]["dependencies"] if d.startswith("ray["))
    pinned = re.search(r"==(\d+\.\d+)", ray_pin).group(1)
    args = _dockerfile_args()
    assert args["RAY_VERSION"].startswith(pinned + "."), (args["RAY_VERSION"], ray_pin)
    python = re.search(r">=\s*(\d+)\.(\d+)", project["project"]["requires-python"]).groups()
    assert args["PYTHON_TAG"] == "py" + "".join(python)
    assert project["tool"]["ruff"]["target-version"] == args["PYTHON_TAG"]
    import ray

    assert ray.__version__ == args["RAY_VERSION"], "the tests run another Ray than the image"
    for path in MANIFEST_FILES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] in RAY_KINDS:
                assert _cluster_spec(doc)["rayVersion"] == args["RAY_VERSION"], path


def _stages() -> dict[str, tuple[str, str]]:
    """Dockerfile stage name -> (base image, the stage's text)."""
    text = (ROOT / "Dockerfile").read_text()
    parts = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    return {p.split()[2]: (p.split()[0], p) for p in parts}


def test_dockerfile_images_are_slim_cached_and_non_root():
    stages = _stages()
    assert list(stages) == ["wheel", "server", "runtime"], "the runtime image is the default"
    assert stages["wheel"][0].startswith("python:"), "a pure-Python wheel needs no CUDA image"
    assert stages["server"][0].startswith("python:"), "MLflow runs on a slim image"
    assert stages["runtime"][0] == "rayproject/ray:${RAY_VERSION}-${PYTHON_TAG}-gpu"
    assert "pip wheel" in stages["wheel"][1] and "benchmarks/costs.json" in stages["wheel"][1]
    for name in ("server", "runtime"):
        body = stages[name][1]
        user = re.findall(r"^USER (\S+)", body, flags=re.MULTILINE)
        assert user and user[-1].split(":")[0] not in ("0", "root"), name
        assert "constraints.txt" in body, f"{name}: versions from the lock"
        assert "--mount=type=cache" in body, f"{name}: pip's cache survives builds"
    runtime = stages["runtime"][1]
    # A new commit must not re-run the dependency install: GIT_SHA comes after every pip.
    assert runtime.index("ARG GIT_SHA") > runtime.rindex("pip install")
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("**") if "**" in ignore else 0] == "**", "ignore all, then allow"
    for needed in ("setup.py", "pyproject.toml", "sweeps/**", "orchestrator/**",
                   "constraints.txt", "benchmarks/costs.json"):  # fmt: skip
        assert f"!{needed}" in ignore


def test_constraints_lock_every_dependency_at_pyprojects_pins():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = _pyproject()["project"]
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    locked = {}
    for line in lines:
        if line and not line.startswith("#"):
            name, version = line.split("==")
            locked[canonicalize_name(name)] = version
    for dep in project["dependencies"] + project["optional-dependencies"]["server"]:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        assert name in locked, f"constraints.txt lacks {req.name}"
        assert req.specifier.contains(locked[name]), (dep, locked[name])


def test_third_party_images_are_pinned():
    for doc in render("overlays/gpu"):
        for image in re.findall(r"'image': '([^']+)'", str(doc)):
            if "unmute-bench" not in image:
                tag = image.rsplit(":", 1)[-1]
                assert re.match(r"(RELEASE\.|\d+\.\d+)", tag), f"{image} floats"


@needs_kustomize
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_carry_the_package_version(overlay):
    version = _pyproject()["project"]["version"]
    for doc in render(f"overlays/{overlay}"):
        for image in re.findall(r"'image': '([^']+)'", str(doc)):
            if "unmute-bench" in image:
                assert re.search(rf"unmute-bench(-server)?:{re.escape(version)}$", image), (
                    doc["metadata"]["name"],
                    image,
                )


@needs_kustomize
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_entrypoint_runs_the_overlays_sweep(overlay):
    from orchestrator.config import list_sweeps, load

    job = _one(render(f"overlays/{overlay}"), "RayJob")
    words = job["spec"]["entrypoint"].split()
    assert words[:3] == ["python", "-m", "orchestrator.sweep"]
    assert words[3] == OVERLAYS[overlay] and words[3] in list_sweeps()
    load(words[3], [w for w in words[4:] if not w.startswith("--")])  # overrides validate


@needs_kustomize
def test_gpu_overlay_stages_what_full_benchmark_needs():
    from orchestrator.config import load

    env = _one(render("overlays/gpu"), "ConfigMap", "unmute-bench-env")["data"]
    cfg = load("full_benchmark")
    encoders = {e.name for e in cfg.encoders}
    assert set(env["UNMUTE_STAGE_DATASETS"].split()) == {d.name for d in cfg.datasets}
    assert set(env["UNMUTE_STAGE_ENCODERS"].split()) == encoders
    for name in encoders:
        location = env.get(f"{name.upper()}_CHECKPOINT", "")
        assert location.startswith(env["UNMUTE_HOME"] + "/checkpoints/"), (name, location)


@needs_kustomize
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_reference_has_a_template_with_placeholders(overlay):
    templates = {}
    for path in sorted((K8S / "secrets").glob("*.template.yaml")):
        doc = yaml.safe_load(path.read_text())
        assert doc["kind"] == "Secret"
        for key, value in doc["stringData"].items():
            assert key == "username" or PLACEHOLDER in value, (
                f"{path.name}: {key} is not a placeholder"
            )
        templates[doc["metadata"]["name"]] = set(doc["stringData"])
    docs = render(f"overlays/{overlay}")
    assert not [d for d in docs if d["kind"] == "Secret"], "Secrets are applied from templates"
    refs: set[tuple[str, str | None]] = set()

    def walk(node):
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                refs.add((node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]))
            if "secretRef" in node:
                refs.add((node["secretRef"]["name"], None))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for doc in docs:
        walk(doc)
        if doc["kind"] in RAY_KINDS:
            refs.add((_cluster_spec(doc)["authOptions"]["secretName"], "auth_token"))
    assert refs
    for name, key in sorted(refs, key=str):
        assert name in templates, f"no k8s/secrets template for Secret {name}"
        assert key is None or key in templates[name], f"template of {name} lacks key {key}"


def test_every_environment_variable_the_code_reads_is_documented():
    readme = (ROOT / "README.md").read_text()
    used = set()
    for folder in ("orchestrator", "backbones", "probes", "sweeps", "k8s"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".yaml"):
                used |= set(re.findall(r"\bUNMUTE_[A-Z_]*[A-Z]\b", path.read_text()))
    contract = {"UNMUTE_HOME", "UNMUTE_OUT_ROOT", "UNMUTE_DATA", "UNMUTE_STORE",
                "UNMUTE_TUNE_STORAGE", "UNMUTE_NODE_CACHE", "UNMUTE_SWEEPS"}  # fmt: skip
    assert contract <= used | contract
    undocumented = sorted(v for v in used | contract if f"`{v}" not in readme)
    assert not undocumented, f"document in README.md: {undocumented}"


@needs_kustomize
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_environment_is_one_shared_definition(overlay):
    docs = render(f"overlays/{overlay}")
    env = _one(docs, "ConfigMap", "unmute-bench-env")["data"]
    for name in ("UNMUTE_HOME", "UNMUTE_OUT_ROOT", "UNMUTE_DATA", "UNMUTE_STORE",
                 "UNMUTE_TUNE_STORAGE", "UNMUTE_NODE_CACHE", "MLFLOW_TRACKING_URI",
                 "AWS_ENDPOINT_URL"):  # fmt: skip
        assert env.get(name), f"{name} missing from the unmute-bench-env ConfigMap"
    for name in ("UNMUTE_OUT_ROOT", "UNMUTE_DATA", "UNMUTE_STORE", "UNMUTE_TUNE_STORAGE"):
        assert env[name].startswith(env["UNMUTE_HOME"] + "/"), f"{name} must live on S3"
    expected = [
        {"configMapRef": {"name": "unmute-bench-env"}},
        {"secretRef": {"name": "unmute-bench-s3"}},
    ]
    job = _one(docs, "RayJob")
    cluster = _one(render("base/cluster"), "RayCluster")
    pods = [*_pod_templates(job), *_pod_templates(cluster)]
    for role, template in pods:
        spec = template["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            if c["name"] == "ray-job-submitter":
                continue  # KubeRay's `ray job submit`: talks to the dashboard only
            assert c.get("envFrom") == expected, (role, c["name"])
            extra = {e["name"] for e in c.get("env", [])}
            allowed = {"TMPDIR", "HF_HOME", "RAY_AUTH_TOKEN"}  # scratch; the token to check it
            assert extra <= allowed, f"{role}/{c['name']}: put {extra} in the ConfigMap"


@needs_kustomize
def test_rayjob_and_raycluster_do_not_drift():
    """The gpu RayJob's cluster is the long-lived RayCluster, field for field."""
    job = _one(render("overlays/gpu"), "RayJob")
    cluster = _one(render("base/cluster"), "RayCluster")

    def same_registry(spec):  # the overlay names your registry; base/cluster the bare image
        return yaml.safe_load(
            re.sub(r"image: \S*/unmute-bench:", "image: unmute-bench:", yaml.safe_dump(spec))
        )

    assert same_registry(job["spec"]["rayClusterSpec"]) == same_registry(cluster["spec"])


@needs_kustomize
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ray_pods_are_scheduled_and_secured(overlay):
    docs = render(f"overlays/{overlay}")
    job = _one(docs, "RayJob")
    spec = _cluster_spec(job)
    assert spec["authOptions"]["mode"] == "token"
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["serviceType"] == "ClusterIP"
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["shutdownAfterJobFinishes"]
    assert all(d["spec"]["type"] == "ClusterIP" for d in docs if d["kind"] == "Service")
    env = _one(docs, "ConfigMap", "unmute-bench-env")["data"]
    for group in spec["workerGroupSpecs"]:
        assert group["minReplicas"] == 0
    for role, template in _pod_templates(job)[:-1]:
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        volumes = {v["name"]: v for v in pod["volumes"]}
        (c,) = pod["containers"]
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory", role
        cache = [p for p in mounts if env["UNMUTE_NODE_CACHE"].startswith(p + "/")]
        assert cache, f"{role}: UNMUTE_NODE_CACHE is not on a mounted volume"
        assert c["resources"]["requests"] == c["resources"]["limits"] or overlay == "gpu"
    if overlay == "gpu":
        (group,) = spec["workerGroupSpecs"]
        pod = group["template"]["spec"]
        resources = pod["containers"][0]["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
        assert pod["nodeSelector"]


@needs_kustomize
def test_mlflow_server_uses_postgres_and_proxied_s3_artifacts():
    docs = render("overlays/gpu")
    env = _one(docs, "ConfigMap", "unmute-bench-env")["data"]
    server = _one(docs, "Deployment", "mlflow")["spec"]["template"]["spec"]["containers"][0]
    args = " ".join(server["args"])
    assert "--serve-artifacts" in args and '--artifacts-destination="$UNMUTE_HOME/' in args
    assert env["UNMUTE_HOME"].startswith("s3://")
    uri = next(e for e in server["env"] if e["name"] == "MLFLOW_BACKEND_STORE_URI")
    assert uri["valueFrom"]["secretKeyRef"]["name"] == "unmute-bench-postgres"
    template = yaml.safe_load((K8S / "secrets" / "postgres.template.yaml").read_text())
    assert template["stringData"]["uri"].startswith("postgresql://")
    volumes = _one(docs, "StatefulSet", "postgres")["spec"]["template"]["spec"]["volumes"]
    claim = next(v["persistentVolumeClaim"]["claimName"] for v in volumes)
    assert claim in {d["metadata"]["name"] for d in render("namespace")}, "outlives the overlay"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def _quantity(value: str | int) -> float:
    """A Kubernetes quantity in base units (CPUs, bytes)."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    text = str(value)
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def _pods_of(docs) -> list[tuple[str, dict, int]]:
    """(name, pod spec, replicas) of every pod an overlay starts with, RayJob pods included."""
    pods = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            pods.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"], 1))
        elif doc["kind"] == "RayJob":
            spec = doc["spec"]["rayClusterSpec"]
            pods.append(("head", spec["headGroupSpec"]["template"]["spec"], 1))
            pods += [(g["groupName"], g["template"]["spec"], g["replicas"])
                     for g in spec["workerGroupSpecs"]]  # fmt: skip
            pods.append(("submitter", doc["spec"]["submitterPodTemplate"]["spec"], 1))
    return pods


def _requests(pod: dict) -> tuple[float, float]:
    """(CPUs, bytes) a pod requests: its containers, or its largest init container."""

    def total(containers):
        cpu = sum(_quantity(c["resources"]["requests"].get("cpu", 0)) for c in containers)
        mem = sum(_quantity(c["resources"]["requests"].get("memory", 0)) for c in containers)
        return cpu, mem

    main = total(pod["containers"])
    inits = [total([c]) for c in pod.get("initContainers", [])]
    return max([main[0], *(i[0] for i in inits)]), max([main[1], *(i[1] for i in inits)])


@needs_kustomize
def test_cpu_smoke_fits_a_laptop_cluster():
    pods = _pods_of(render("overlays/cpu-smoke"))
    cpu = sum(_requests(p)[0] * n for _, p, n in pods)
    mem = sum(_requests(p)[1] * n for _, p, n in pods)
    assert cpu <= 2.0 and mem <= 6 * 2**30, f"{cpu:.2f} CPUs, {mem / 2**30:.1f} GiB requested"


@needs_kustomize
def test_gpu_overlay_asks_no_node_for_hundreds_of_gib_of_disk():
    for name, pod, _ in _pods_of(render("overlays/gpu")):
        for c in pod["containers"] + pod.get("initContainers", []):
            asked = c["resources"].get("requests", {}).get("ephemeral-storage", "0")
            assert _quantity(asked) <= 50 * 2**30, (name, c["name"], asked)
        for volume in pod.get("volumes", []):
            size = volume.get("emptyDir", {}).get("sizeLimit", "0")
            assert _quantity(size) <= 50 * 2**30, (name, volume)


@needs_kustomize
def test_rayjob_has_deadlines_and_its_own_names():
    job = _one(render("overlays/gpu"), "RayJob")
    assert 0 < job["spec"]["preRunningDeadlineSeconds"] < job["spec"]["activeDeadlineSeconds"]
    waits = job["spec"]["submitterPodTemplate"]["spec"]["initContainers"]
    assert "deadline" in next(c for c in waits if c["name"] == "wait-for-mlflow")["args"][0]
    cluster = _one(render("base/cluster"), "RayCluster")
    assert cluster["metadata"]["name"] != job["metadata"]["name"], "one head Service each"
    assert cluster["metadata"]["namespace"] == job["metadata"]["namespace"] == "unmute-bench"
    assert not [d for k in ("base", "base/cluster") for d in render(k) if d["kind"] == "Job"]


def _placeholder_checks(docs) -> list[tuple[str, list[str], str]]:
    """(container, shell, check) of every container that refuses placeholder Secrets."""
    found = []
    for name, pod, _ in _pods_of(docs):
        for c in pod["containers"] + pod.get("initContainers", []):
            script = " ".join(c.get("args", []))
            if "REPLACE_ME" in script:
                start = script.index("bad=")
                check = script[start : script.index("exit 1; fi", start) + 10]
                found.append((f"{name}/{c['name']}", c["command"], check))
    return found


@needs_kustomize
def test_placeholder_secrets_are_refused_at_start():
    checks = _placeholder_checks(render("overlays/gpu"))
    # Every Secret's values reach at least one check: the Ray token (head, submitter), the S3
    # keys (head, submitter), PostgreSQL's password (postgres) and uri (mlflow).
    assert {c[0] for c in checks} >= {"head/check-secrets", "submitter/stage", "postgres/postgres",
                                      "mlflow/mlflow"}, checks  # fmt: skip
    clean = {"PATH": os.environ["PATH"], "RAY_AUTH_TOKEN": "0f3a"}
    for where, shell, check in checks:
        ok = subprocess.run([*shell, check], env=clean, capture_output=True, text=True, check=False)
        assert ok.returncode == 0, (where, ok.stderr)
        bad = subprocess.run([*shell, check], env={**clean, "RAY_AUTH_TOKEN": "REPLACE_ME_ray"},
                             capture_output=True, text=True, check=False)  # fmt: skip
        assert bad.returncode == 1 and "RAY_AUTH_TOKEN" in bad.stderr, (where, bad.stderr)
        assert "k8s/secrets" in bad.stderr and "REPLACE_ME_ray" not in bad.stderr


def _selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        if expr["operator"] == "Exists" and value is None:
            return False
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
    return True


@needs_kustomize
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_by_default_and_open_each_service(overlay):
    docs = render(f"overlays/{overlay}")
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert any(p["spec"]["podSelector"] == {} and "ingress" not in p["spec"] for p in policies)
    for service in (d for d in docs if d["kind"] == "Service"):
        labels = service["spec"]["selector"]
        allowing = [p for p in policies if p["spec"].get("ingress")
                    and _selects(p["spec"]["podSelector"], labels)]  # fmt: skip
        assert allowing, f"nothing may reach Service {service['metadata']['name']}"
    postgres = next(p for p in policies if p["spec"].get("ingress") and _selects(
        p["spec"]["podSelector"], {"app.kubernetes.io/name": "postgres"}))  # fmt: skip
    (rule,) = postgres["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}}]
    ray = {"ray.io/cluster": "x", "app.kubernetes.io/part-of": "unmute-bench"}
    for name, pod, _ in _pods_of(docs):
        env = [e for c in pod["containers"] for e in c.get("envFrom", [])]
        assert {"secretRef": {"name": "unmute-bench-minio-root"}} not in env or name == "minio"
    assert any(p["spec"].get("ingress") and _selects(p["spec"]["podSelector"], ray)
               for p in policies)  # fmt: skip
