"""Pre-flight: everything a sweep needs, checked before any Ray task is queued.

Every checkpoint must be resolvable, every dataset staged (or generated on first use), every
resource request (trials, extraction) must fit a node the cluster has or its autoscaler can add.
All problems are listed at once; the sweep exits 2 before Ray work (also under ``--dry-run``).
While the sweep runs, :class:`InfeasibleWatch` fails it when a demand stays unschedulable for
``UNMUTE_INFEASIBLE_TIMEOUT_S`` (default 60 s), naming the
demand and the cluster's resources, instead of hanging silently.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping

log = logging.getLogger(__name__)

DEFAULT_INFEASIBLE_TIMEOUT_S = 60.0
Shape = Mapping[str, float]


def infeasible_timeout_s() -> float:
    return float(os.environ.get("UNMUTE_INFEASIBLE_TIMEOUT_S") or DEFAULT_INFEASIBLE_TIMEOUT_S)


# ---------------------------------------------------------------- checkpoints and datasets


def checkpoint_problems(cfg) -> list[str]:
    """Encoders whose checkpoint cannot be resolved (no download is attempted)."""
    from backbones import BACKBONES

    problems = []
    for enc in cfg.encoders:
        if str(enc.checkpoint) == "random":
            continue
        spec = BACKBONES.get(enc.name).spec
        if spec.family == "user":  # loads its own weights; the checker's cheap part instead
            from orchestrator.check import cheap_problems

            problems += cheap_problems(enc.source, enc.checkpoint)
            continue
        ref = enc.checkpoint or os.environ.get(spec.env_var) or spec.checkpoint.url
        where = (
            f"checkpoint={enc.checkpoint}"
            if enc.checkpoint
            else f"${spec.env_var}"
            if os.environ.get(spec.env_var)
            else "official download"
        )
        if not ref:
            problems.append(
                f"encoder {enc.name}: no checkpoint. The official {spec.checkpoint.file_name!r} "
                f"has no direct download ({spec.checkpoint.page}); download it and set "
                f"{spec.env_var}=PATH (or s3://...), or use encoder_defaults.checkpoint=random."
            )
            continue
        problem = _checkpoint_problem(str(ref))
        if problem:
            problems.append(f"encoder {enc.name} ({where}): {problem}")
    return problems


def _checkpoint_problem(ref: str) -> str:
    if ref.startswith("hf://"):
        body = ref.removeprefix("hf://").partition("@")[0]
        if len(body.split("/")) < 3:
            return f"{ref!r} must look like hf://<owner>/<repo>/<file>[@revision]"
        return ""
    if ref.startswith(("http://", "https://")):
        return ""  # downloaded by the extraction task; not fetched here
    if "://" in ref and not ref.startswith("file://"):
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(ref)
            return "" if fs.exists(path) else f"{ref} does not exist"
        except (OSError, ValueError, ImportError) as err:
            return f"cannot check {ref}: {type(err).__name__}: {err}"
    path = os.path.expanduser(ref.removeprefix("file://"))
    return "" if os.path.isfile(path) else f"checkpoint file {path} does not exist"


def dataset_problems(cfg) -> list[str]:
    """Datasets that are neither staged nor generated on first use nor readable in place."""
    from orchestrator.datasets import DatasetError, get_dataset
    from orchestrator.datasets.api import staged_root

    problems = []
    for ds in cfg.datasets:
        try:
            spec = get_dataset(ds.name, source=ds.source, **ds.options)
            staged_root(spec, cfg.data_root)
        except DatasetError as err:
            problems.append(f"dataset {ds.name}: {err}")
    return problems


def probe_problems(cfg) -> list[str]:
    """Fixed probe hyperparameters that the probe's constructor does not take (read statically,
    without importing torch)."""
    from probes import PROBES
    from probes.registry import did_you_mean

    problems = []
    for probe in cfg.probes:
        valid = _static_hparams(PROBES._entries.get(probe.name))
        if valid is None:
            continue
        for key in probe.hparams:
            if key not in valid:
                problems.append(
                    f"probe {probe.name}: no hyperparameter {key!r}.{did_you_mean(key, valid)} "
                    f"Valid: {', '.join(sorted(valid))}."
                )
    return problems


def _static_hparams(entry) -> list[str] | None:
    """Constructor argument names of a lazy ``module:Class`` entry, by parsing its source (or,
    once the registry has loaded the class, from its signature)."""
    if isinstance(entry, type):
        import inspect

        params = inspect.signature(entry.__init__).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return [p.name for p in params if p.name not in ("self", "embed_dim", "num_classes")]
    if not isinstance(entry, str):
        return None
    module, _, name = entry.partition(":")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return None
    with open(spec.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                    args = [a.arg for a in (*item.args.args, *item.args.kwonlyargs)]
                    if item.args.kwarg is not None:
                        return None
                    return [a for a in args if a not in ("self", "embed_dim", "num_classes")]
    return None


# ---------------------------------------------------------------- resources


def demands(cfg) -> dict[str, dict[str, float]]:
    """The resource shapes the sweep will ask for, by what asks."""

    def shape(cpus: float, gpus: float) -> dict[str, float]:
        return {k: v for k, v in (("CPU", cpus), ("GPU", gpus)) if v > 0}

    return {
        "a trial": shape(cfg.ray.cpus_per_trial, cfg.ray.gpus_per_trial),
        "an extraction": shape(cfg.ray.cpus_per_extraction, cfg.ray.gpus_per_extraction),
    }


def fits(shape: Shape, node: Shape) -> bool:
    return all(node.get(k, 0.0) + 1e-9 >= v for k, v in shape.items() if v > 0)


def fmt(shape: Shape) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shape.items())) + "}"


def resource_problems(requests: Mapping[str, Shape], nodes: Iterable[Shape]) -> list[str]:
    """Requests that fit no node (existing or addable by the autoscaler)."""
    nodes = [dict(n) for n in nodes]
    listing = "; ".join(fmt(_public(n)) for n in nodes) or "none"
    return [
        f"{who} asks for {fmt(shape)}, but no node of this cluster has it (nodes, including "
        f"those the autoscaler may add: {listing}). Lower ray.cpus_per_*/ray.gpus_per_* or add "
        "such nodes."
        for who, shape in requests.items()
        if shape and not any(fits(shape, n) for n in nodes)
    ]


def _public(node: Shape) -> dict[str, float]:
    """A node's resources without Ray's internal ones (node:..., memory, object store)."""
    skip = ("node:", "memory", "object_store_memory", "accelerator_type:")
    return {k: v for k, v in node.items() if not k.startswith(skip)}


def node_shapes() -> list[dict[str, float]]:
    """Total resources of every alive node, plus one node of each autoscaler group."""
    import ray

    shapes = [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except (ImportError, AttributeError, RuntimeError) as err:
        log.debug("no autoscaler config: %s", err)
        config = None
    if config is not None:
        for group in config.node_group_configs:
            if group.max_count != 0:
                shapes.append(dict(group.resources))
    return shapes


# ---------------------------------------------------------------- the whole check


def check(cfg, *, with_cluster: bool) -> list[str]:
    """Every problem found; ``with_cluster`` adds the resource check (needs Ray connected)."""
    problems = [*checkpoint_problems(cfg), *dataset_problems(cfg), *probe_problems(cfg)]
    if with_cluster:
        problems += resource_problems(demands(cfg), node_shapes())
    return problems


def report(problems: list[str]) -> str:
    lines = [f"pre-flight: {len(problems)} problem(s); nothing was started:"]
    lines += [f"  - {p}" for p in problems]
    return "\n".join(lines)


# ---------------------------------------------------------------- while running


def pending_shapes() -> list[tuple[dict[str, float], int]]:
    """Resource shapes the cluster is waiting to place, with how many of each (from GCS)."""
    import ray
    from ray.autoscaler.v2.sdk import get_cluster_resource_state

    gcs = ray._private.worker.global_worker.gcs_client
    state = get_cluster_resource_state(gcs)
    out = []
    for req in state.pending_resource_requests:
        out.append((dict(req.request.resources_bundle), int(req.count)))
    for gang in state.pending_gang_resource_requests:
        for req in gang.requests:
            out.append((dict(req.resources_bundle), 1))
    # a task inside a placement group asks for its group's resources (CPU_group_<id>), which
    # exist only once the group is placed; the group's own bundles are checked instead
    return [(shape, n) for shape, n in out if not any("_group_" in k for k in shape)]


class InfeasibleWatch:
    """A driver thread that fails the sweep when a demand fits no node for ``timeout_s``."""

    def __init__(
        self,
        timeout_s: float | None = None,
        interval_s: float = 2.0,
        on_infeasible: Callable[[str], None] | None = None,
        pending: Callable[[], list[tuple[dict[str, float], int]]] = pending_shapes,
        nodes: Callable[[], list[dict[str, float]]] = node_shapes,
    ) -> None:
        self.timeout_s = infeasible_timeout_s() if timeout_s is None else timeout_s
        self.interval_s = interval_s
        self.on_infeasible = on_infeasible or _fail_now
        self._pending, self._nodes = pending, nodes
        self._since: dict[tuple, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="infeasible-watch", daemon=True)
        self.message = ""

    def __enter__(self) -> InfeasibleWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def poll(self, now: float | None = None) -> str:
        """One look; returns the failure message once a demand has waited too long."""
        now = time.monotonic() if now is None else now
        nodes = self._nodes()
        stuck = {}
        for shape, count in self._pending():
            if shape and not any(fits(shape, n) for n in nodes):
                key = tuple(sorted(shape.items()))
                stuck[key] = stuck.get(key, 0) + count
        self._since = {k: self._since.get(k, now) for k in stuck}
        late = [k for k, t in self._since.items() if now - t >= self.timeout_s]
        if not late:
            return ""
        listing = "; ".join(fmt(_public(n)) for n in nodes) or "none"
        asks = ", ".join(f"{stuck[k]} x {fmt(dict(k))}" for k in late)
        return (
            f"infeasible: {asks} waited {self.timeout_s:g} s for resources no node has "
            f"(cluster nodes: {listing}). Lower ray.cpus_per_*/ray.gpus_per_* or add nodes "
            "with those resources; raise UNMUTE_INFEASIBLE_TIMEOUT_S if an autoscaler is slow to "
            "add them."
        )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                message = self.poll()
            except Exception as err:  # noqa: BLE001 - a watch must never kill the sweep itself
                log.debug("infeasible watch: %s", err)
                continue
            if message:
                self.message = message
                self.on_infeasible(message)
                return


def _fail_now(message: str) -> None:
    """Default reaction: say why, then end the driver (Ray tasks die with it)."""
    log.error("%s", message)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(2)
