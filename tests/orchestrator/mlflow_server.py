"""A real ``mlflow server`` subprocess for tests and benchmarks, plus a REST reader and a
counter of the HTTP requests this process makes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(folder: Path, timeout: float = 180.0) -> Iterator[str]:
    """Start ``mlflow server --workers 1`` (sqlite backend, artifacts proxied into ``folder``)
    on a free port; yield its URL; stop it (its own process group only)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--workers", "1",
        "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
        "--artifacts-destination", str(folder / "artifacts"),
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = open(folder / "server.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited: {(folder / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server not up after {timeout} s")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def rest(url: str, endpoint: str, body: dict | None = None) -> dict:
    """One call of the MLflow REST API with plain urllib (POST with a body, else GET)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/{endpoint}",
        data=data,
        headers={"Content-Type": "application/json"},
        method="POST" if data is not None else "GET",
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read() or b"{}")


def search_runs(url: str, experiment_id: str, query: str = "") -> list[dict]:
    """Every run matching ``query`` via POST /api/2.0/mlflow/runs/search, all pages; tags,
    params and latest metrics flattened into dicts."""
    runs, token = [], None
    while True:
        body = {"experiment_ids": [experiment_id], "filter": query, "max_results": 1000}
        if token:
            body["page_token"] = token
        page = rest(url, "runs/search", body)
        for run in page.get("runs", []):
            data = run.get("data", {})
            runs.append(
                {
                    "run_id": run["info"]["run_id"],
                    "status": run["info"]["status"],
                    "tags": {t["key"]: t["value"] for t in data.get("tags", [])},
                    "params": {p["key"]: p["value"] for p in data.get("params", [])},
                    "metrics": {m["key"]: m["value"] for m in data.get("metrics", [])},
                }
            )
        token = page.get("next_page_token")
        if not token:
            return runs


@contextlib.contextmanager
def count_requests() -> Iterator[Counter]:
    """Count the HTTP requests this process sends (``(method, path)`` -> n)."""
    import requests

    counts: Counter = Counter()
    original = requests.Session.request

    def request(self, method, url, *args, **kwargs):
        path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        counts[(method.upper(), "/" + path)] += 1
        return original(self, method, url, *args, **kwargs)

    requests.Session.request = request
    try:
        yield counts
    finally:
        requests.Session.request = original
