"""Every location a sweep uses, verified from every Ray node before the first task.

On a cluster whose nodes do not share a filesystem, a local path on the driver (the store, the
data, the outputs) is a different, empty folder on each other node: extraction writes there,
trials on other nodes find nothing, and the failure surfaces minutes later as a wrong cause.
So after connecting, the driver writes a small marker file in each local location and runs one
tiny task pinned to each alive node (``NodeAffinitySchedulingStrategy``, no CPU) that reads the
markers back. A location some node cannot see refuses the sweep (exit 2) naming the location,
the node(s) and the fix. URLs (``s3://...``) are one namespace for every node and are not checked
here (the store's own checks cover them).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Self

log = logging.getLogger(__name__)

MARKER_DIR = ".unmute-nodecheck"
ANSWER_S = 120.0  # a node that does not run the check task within this long is reported


@dataclass(frozen=True)
class Place:
    """One local location of the sweep: its name, the variable that sets it, and its path."""

    name: str
    env: str
    path: str


@dataclass(frozen=True)
class Unseen:
    """A location that some node(s) cannot see."""

    place: Place
    nodes: tuple[str, ...]

    def message(self) -> str:
        return (
            f"the {self.place.name} location {self.place.path} is not visible from Ray "
            f"node(s) {', '.join(self.nodes)} (a marker the driver wrote there is missing on "
            f"that node: the nodes do not share this filesystem); set {self.place.env} (or "
            f"UNMUTE_HOME) to s3://... or to a filesystem mounted at the same path on every node"
        )


def places(cfg) -> list[Place]:
    """The local (non-URL) locations a sweep reads or writes from its tasks."""
    found = [
        Place("data", "UNMUTE_DATA", cfg.data_root),
        Place("store", "UNMUTE_STORE", cfg.store_url),
        Place("tune", "UNMUTE_TUNE_STORAGE", cfg.tune_storage),
    ]
    if not cfg.out_url:
        found.append(Place("outputs", "UNMUTE_OUT_ROOT", str(cfg.out_dir)))
    uri = cfg.tracking_uri
    if uri.startswith("sqlite:///"):
        found.append(Place("mlflow", "MLFLOW_TRACKING_URI", str(Path(uri[10:]).parent)))
    seen: set[str] = set()
    out = []
    for place in found:
        if "://" in place.path or not place.path:
            continue
        path = str(Path(place.path).expanduser().resolve())
        if path not in seen:
            seen.add(path)
            out.append(Place(place.name, place.env, path))
    return out


def write_markers(where: list[Place], token: str) -> dict[str, str]:
    """One marker file per location; returns ``{marker path: token}``."""
    markers = {}
    for place in where:
        folder = Path(place.path) / MARKER_DIR
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / token
        marker.write_text(token)
        markers[str(marker)] = token
    return markers


def read_markers(markers: dict[str, str]) -> list[str]:
    """The markers missing (or different) where this code runs."""
    missing = []
    for path, token in markers.items():
        try:
            ok = Path(path).read_text() == token
        except OSError:
            ok = False
        if not ok:
            missing.append(path)
    return missing


def _node_label(node: dict) -> str:
    return f"{node.get('NodeManagerAddress', '?')} ({str(node.get('NodeID', ''))[:8]})"


def check_nodes(cfg) -> list[str]:
    """Problems (one line each) with the locations as every alive node sees them."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    where = places(cfg)
    if not where:
        return []
    token = f"{os.getpid()}-{secrets.token_hex(6)}"
    markers = write_markers(where, token)
    try:
        probe = ray.remote(num_cpus=0, max_retries=0)(read_markers)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        pending = {
            probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(markers): _node_label(n)
            for n in nodes
        }
        ready, late = ray.wait(list(pending), num_returns=len(pending), timeout=ANSWER_S)
        unseen: dict[str, list[str]] = {}
        problems = []
        for ref in ready:
            try:
                missing = ray.get(ref)
            except ray.exceptions.RayError as err:  # the node died under the check
                log.warning("node %s could not run the location check: %s", pending[ref], err)
                continue
            for path in missing:
                unseen.setdefault(path, []).append(pending[ref])
        for ref in late:
            ray.cancel(ref, force=True)
            problems.append(
                f"Ray node {pending[ref]} did not run the location check within "
                f"{ANSWER_S:.0f} s; check that it is healthy (`ray status`) and re-run"
            )
        by_marker = dict(zip(markers, where, strict=True))
        problems = [
            Unseen(by_marker[p], tuple(sorted(n))).message() for p, n in unseen.items()
        ] + problems
        log.info(
            "locations checked from %d node(s): %s",
            len(nodes),
            "ok" if not problems else f"{len(problems)} problem(s)",
        )
        return problems
    finally:
        for path in markers:
            Path(path).unlink(missing_ok=True)
            folder = Path(path).parent
            if folder.is_dir() and not any(folder.iterdir()):
                shutil.rmtree(folder, ignore_errors=True)


def report(problems: list[str]) -> str:
    lines = ["error: the cluster's nodes cannot all see the sweep's locations:"]
    return "\n".join(lines + [f"  - {p}" for p in problems])


class NodeWatch:
    """Logs each Ray node that leaves the cluster mid-sweep (a preempted spot instance).

    Ray reruns the lost node's tasks and actors elsewhere (trials retry, extraction tasks
    retry); this says which node went, in the progress log, so a changed pace has a cause."""

    def __init__(self, every_s: float = 5.0) -> None:
        import threading

        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="unmute-node-watch", daemon=True)
        self._alive: dict[str, str] = {}
        self.lost: list[str] = []

    def __enter__(self) -> Self:
        self._alive = self._poll()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.every_s + 5)
        self._check()  # a node lost during the last interval is named too

    @staticmethod
    def _poll() -> dict[str, str]:
        import ray

        return {n["NodeID"]: _node_label(n) for n in ray.nodes() if n.get("Alive")}

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._check()

    def _check(self) -> None:
        try:
            now = self._poll()
        except Exception as err:  # noqa: BLE001 - the GCS may be briefly unreachable
            log.debug("node watch: %s", err)
            return
        for node_id, label in self._alive.items():
            if node_id not in now:
                self.lost.append(label)
                log.warning(
                    "lost Ray node %s: its trials and extraction tasks rerun on the %d "
                    "remaining node(s); finished trials are kept",
                    label,
                    len(now),
                )
        for node_id, label in now.items():
            if node_id not in self._alive:
                log.info("Ray node %s joined the cluster", label)
        self._alive = now


def missing_on_node(pair: tuple[str, str], node: str, cfg) -> str:
    """The error of studies whose store entries one node could not find (not corruption)."""
    return (
        f"the store entries of {pair[0]} / {pair[1]} are missing on Ray node {node} although "
        f"the driver finds them in {cfg.store_url}: that node does not share the store's "
        f"filesystem; set UNMUTE_STORE (or UNMUTE_HOME) to s3://... or to a filesystem mounted "
        f"at the same path on every node, and re-run"
    )
