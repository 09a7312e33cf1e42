"""Real servers for integration tests: a Ray head, a moto S3 server, an MLflow server.

Each runs as its own subprocess on free 127.0.0.1 ports and is stopped by its own process
group (never ``ray stop``, which would stop other people's clusters on a shared machine).
Use from a test module::

    from tests.cluster_fixtures import moto_s3, ray_head, mlflow_server  # noqa: F401

or call the context managers (:func:`start_ray_head`, :func:`start_moto`,
:func:`start_mlflow`) directly, e.g. from a module-scoped fixture of your own.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The smallest search and training a sweep test needs (seconds per study).
TINY_SEARCH = [
    "search.trials=2",
    "search.startup_trials=2",
    "search.grace_epochs=1",
    "train.epochs=2",
    "train.batch_size=8",
    "final.seeds=[0]",
]
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _wait_http(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited ({proc.returncode}): {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status < 500:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s: {log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@dataclass
class RayHead:
    address: str  # GCS address, for ray.init
    dashboard: str  # http://127.0.0.1:PORT, for `ray job submit --address`
    temp_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def submit(self, entrypoint: list[str], *, env_vars: dict[str, str], submission_id: str,
               working_dir: Path = REPO) -> None:
        """`ray job submit --no-wait --working-dir DIR -- ENTRYPOINT` (the real CLI)."""
        import json

        cmd = [
            "ray", "job", "submit", "--address", self.dashboard, "--no-wait",
            "--submission-id", submission_id, "--working-dir", str(working_dir),
            "--runtime-env-json", json.dumps({"env_vars": env_vars}), "--", *entrypoint,
        ]  # fmt: skip
        done = subprocess.run(
            cmd, env=self.env, capture_output=True, text=True, timeout=300, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"ray job submit failed: {done.stdout}\n{done.stderr}")

    def wait(self, submission_id: str, timeout: float) -> tuple[str, str]:
        """Wait for a job to end; return (status, logs)."""
        from ray.job_submission import JobStatus, JobSubmissionClient

        client = JobSubmissionClient(self.dashboard)
        deadline = time.monotonic() + timeout
        status = client.get_job_status(submission_id)
        while time.monotonic() < deadline:
            status = client.get_job_status(submission_id)
            if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                break
            time.sleep(1)
        else:
            client.stop_job(submission_id)
        return str(status.value), client.get_job_logs(submission_id)


def _ray_start_cmd(temp: Path, num_cpus: int) -> tuple[list[str], int, int]:
    (gcs, dash, client, nm, om, agent_l, agent_g, rte, metrics) = free_ports(9)
    lo = 20000 + (os.getpid() * 97 + gcs) % 30000
    cmd = [
        "ray", "start", "--head", "--block", f"--port={gcs}", "--node-ip-address=127.0.0.1",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}",
        f"--ray-client-server-port={client}", f"--node-manager-port={nm}",
        f"--object-manager-port={om}", f"--dashboard-agent-listen-port={agent_l}",
        f"--dashboard-agent-grpc-port={agent_g}", f"--runtime-env-agent-port={rte}",
        f"--metrics-export-port={metrics}", f"--min-worker-port={lo}",
        f"--max-worker-port={lo + 200}", f"--num-cpus={num_cpus}", "--num-gpus=0",
        f"--temp-dir={temp}", "--disable-usage-stats",
    ]  # fmt: skip
    return cmd, gcs, dash


def _wait_started(proc: subprocess.Popen, log: Path, url: str, timeout: float) -> None:
    """Until ``ray start`` says the runtime started and the dashboard answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited ({proc.returncode}): {log.read_text()[-3000:]}")
        if "Ray runtime started" in log.read_text():
            _wait_http(url, max(1.0, deadline - time.monotonic()), proc, log)
            return
        time.sleep(0.5)
    raise TimeoutError(f"ray start did not finish within {timeout:.0f} s: {log.read_text()[-3000:]}")


@contextlib.contextmanager
def start_ray_head(num_cpus: int = 2, env: dict[str, str] | None = None) -> Iterator[RayHead]:
    """``ray start --head --block`` on free ports with its own short ``--temp-dir``.

    Retried (up to three starts) when it fails to come up: on a loaded machine Ray's raylet
    can miss its fixed 30 s registration window."""
    full_env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        **(env or {}),
    }
    full_env.pop("RAY_ADDRESS", None)
    for attempt in range(3):
        temp = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
        cmd, gcs, dash = _ray_start_cmd(temp, num_cpus)
        log = temp / "ray-start.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(
                cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        head = RayHead(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}", temp, full_env)
        try:
            _wait_started(proc, log, f"{head.dashboard}/api/version", 240)
        except (RuntimeError, TimeoutError):
            _stop(proc)
            shutil.rmtree(temp, ignore_errors=True)
            if attempt == 2:
                raise
            time.sleep(10)  # let the machine's load settle before the next start
            continue
        try:
            yield head
        finally:
            _stop(proc)
            shutil.rmtree(temp, ignore_errors=True)
        return


@contextlib.contextmanager
def start_moto(bucket: str = "bench") -> Iterator[dict[str, str]]:
    """A moto S3 server subprocess; yields the env (AWS_ENDPOINT_URL, keys) to talk to it."""
    port = free_port()
    log = Path(tempfile.mkdtemp(prefix="moto")) / "moto.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    env = {**S3_ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    try:
        _wait_http(f"{env['AWS_ENDPOINT_URL']}/moto-api/", 60, proc, log)
        import boto3

        boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], **_boto_keys()).create_bucket(
            Bucket=bucket
        )
        yield env
    finally:
        _stop(proc, grace=5)
        shutil.rmtree(log.parent, ignore_errors=True)


def _boto_keys() -> dict[str, str]:
    return {
        "aws_access_key_id": S3_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": S3_ENV["AWS_SECRET_ACCESS_KEY"],
        "region_name": S3_ENV["AWS_DEFAULT_REGION"],
    }


@contextlib.contextmanager
def start_mlflow(root: Path) -> Iterator[str]:
    """``mlflow server`` (sqlite backend, local artifacts) on a free port; yields its URL."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    log = root / "mlflow-server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "mlflow", "server", "--workers", "1", "--host", "127.0.0.1",
                "--port", str(port), "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                "--artifacts-destination", str(root / "artifacts"),
            ],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/health", 120, proc, log)
        yield url
    finally:
        _stop(proc, grace=10)


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    with start_ray_head() as head:
        yield head


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[dict[str, str]]:
    """Env of a moto server with the bucket ``bench``; also set in os.environ for the module."""
    with start_moto() as env:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            import s3fs

            s3fs.S3FileSystem.clear_instance_cache()
        except ImportError:
            pass
        try:
            yield env
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    with start_mlflow(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


@dataclass
class RayNode:
    """A second Ray node (``ray start --address=HEAD``) on its own loopback address."""

    ip: str
    temp_dir: Path
    proc: subprocess.Popen

    def kill(self) -> None:
        """SIGKILL the node's whole process group, as a preempted machine would vanish."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def unshare_allowed() -> str:
    """"" where a private mount namespace (``unshare -m``) works here, else the reason."""
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    return "" if done.returncode == 0 else f"unshare -m is not permitted: {done.stderr.strip()}"


@contextlib.contextmanager
def start_ray_node(
    head: RayHead,
    ip: str = "127.0.0.2",
    num_cpus: int = 1,
    own_dirs: tuple[Path, ...] = (),
) -> Iterator[RayNode]:
    """``ray start --address=HEAD --node-ip-address=IP --block`` with its own ``--temp-dir``.

    ``own_dirs``: folders this node sees as its own empty disk (a tmpfs mounted over each in a
    private mount namespace, ``unshare -m``), as a second machine without the shared filesystem
    would; needs root (check :func:`unshare_allowed` first)."""
    temp = Path(tempfile.mkdtemp(prefix="rn", dir="/tmp"))
    nm, om, agent_l, agent_g, rte, metrics = free_ports(6)
    lo = 20000 + (os.getpid() * 89 + nm) % 30000
    cmd = [
        "ray", "start", "--block", f"--address={head.address}", f"--node-ip-address={ip}",
        f"--node-manager-port={nm}", f"--object-manager-port={om}",
        f"--dashboard-agent-listen-port={agent_l}", f"--dashboard-agent-grpc-port={agent_g}",
        f"--runtime-env-agent-port={rte}", f"--metrics-export-port={metrics}",
        f"--min-worker-port={lo}", f"--max-worker-port={lo + 200}", f"--num-cpus={num_cpus}",
        "--num-gpus=0", f"--temp-dir={temp}", "--disable-usage-stats",
    ]  # fmt: skip
    if own_dirs:
        mounts = " && ".join(
            f"mkdir -p {d} && mount -t tmpfs tmpfs {d}" for d in map(str, own_dirs)
        )
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               f'{mounts} && exec "$@"', "sh", *cmd]  # fmt: skip
    log = temp / "ray-start.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, env=head.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    node = RayNode(ip, temp, proc)
    try:
        deadline = time.monotonic() + 240
        while "Ray runtime started" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray start (node {ip}) failed: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        _wait_alive(head, ip, deadline)
        yield node
    finally:
        _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_alive(head: RayHead, ip: str, deadline: float) -> None:
    """Until the head lists a live node at ``ip`` (``ray list nodes`` through the dashboard)."""
    from ray.util.state import list_nodes

    while time.monotonic() < deadline:
        try:
            nodes = list_nodes(address=head.dashboard, filters=[("state", "=", "ALIVE")])
        except Exception:  # the state API answers errors while the node registers  # noqa: BLE001
            nodes = []
        if any(n.node_ip == ip for n in nodes):
            return
        time.sleep(1)
    raise TimeoutError(f"node {ip} did not register with the head at {head.address}")


@dataclass
class TwoNodes:
    head: RayHead
    node: RayNode
    private: Path | None  # a folder only the second node sees (its own disk); None: no unshare


@contextlib.contextmanager
def start_two_nodes(num_cpus: int = 1, private: bool = False) -> Iterator[TwoNodes]:
    """A head on 127.0.0.1 and a second node on 127.0.0.2, ``num_cpus`` each.

    ``private``: the second node gets its own empty disk over one folder (``TwoNodes.private``,
    under which the driver's files are invisible to it) where ``unshare -m`` is permitted."""
    folder = Path(tempfile.mkdtemp(prefix="own", dir="/tmp")) if private else None
    if folder is not None and unshare_allowed():
        shutil.rmtree(folder, ignore_errors=True)
        folder = None
    own = (folder,) if folder is not None else ()
    try:
        with (
            start_ray_head(num_cpus=num_cpus) as head,
            start_ray_node(head, num_cpus=num_cpus, own_dirs=own) as node,
        ):
            yield TwoNodes(head, node, folder)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[TwoNodes]:
    """Two nodes; the second one with its own disk over ``private`` where unshare works."""
    with start_two_nodes(private=True) as cluster:
        yield cluster
