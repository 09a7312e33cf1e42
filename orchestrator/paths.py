"""Where a sweep keeps its outputs, data, embedding store and Tune state.

On a laptop (no cluster) the defaults are today's relative folders: ``outputs/<sweep>``,
``data/``, ``outputs/_store``. Connected to a Ray cluster or run as a Ray job, a relative default
would land in Ray's per-job copy of the working dir (``.../runtime_resources/working_dir_files/
_ray_pkg_<hash>/``): gone when Ray cleans up, and a new folder after every code change, so
nothing could resume. There every location resolves under a stable root instead:

``UNMUTE_HOME`` (a local path or ``s3://bucket/prefix``; default ``~/unmute-bench`` on the
driver's machine), holding ``outputs/``, ``data/`` and ``store/``. The specific variables
``UNMUTE_OUT_ROOT``, ``UNMUTE_DATA``, ``UNMUTE_STORE``, ``UNMUTE_TUNE_STORAGE`` override one
location each (with or without a cluster). Tune state lives in ``<output folder>/tune`` unless
``UNMUTE_TUNE_STORAGE`` says otherwise, and the sqlite MLflow store in the output folder (in its
local mirror when the outputs are on S3, see :mod:`orchestrator.outputs`).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CLUSTER_HOME = "~/unmute-bench"
JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray for a `ray job submit` entrypoint
WORKING_DIR_COPY = "runtime_resources/working_dir_files"

KINDS = ("outputs", "data", "store")
ENV = {"outputs": "UNMUTE_OUT_ROOT", "data": "UNMUTE_DATA", "store": "UNMUTE_STORE"}
LAPTOP = {"outputs": "outputs", "data": "data", "store": "outputs/_store"}
UNDER_HOME = {"outputs": "outputs", "data": "data", "store": "store"}


def is_url(location: str) -> bool:
    return "://" in str(location)


def in_job_copy(path: str | os.PathLike) -> bool:
    """True if ``path`` lies inside Ray's per-job working-dir copy."""
    return WORKING_DIR_COPY in Path(path).resolve().as_posix()


def cluster_reason(address: str = "") -> str:
    """Why this process counts as running on a cluster ("" on a laptop)."""
    if os.environ.get(JOB_CONFIG_ENV):
        return "running as a Ray job"
    if in_job_copy(os.getcwd()):
        return "running inside a Ray job's working-dir copy"
    if address and address != "local":  # "local": Ray starts a private instance here
        return f"connecting to the Ray cluster at {address}"
    if os.environ.get("RAY_ADDRESS", "local") != "local":
        return f"RAY_ADDRESS={os.environ['RAY_ADDRESS']}"
    return ""


def home(cluster: bool) -> str:
    """The stable root: ``$UNMUTE_HOME``, else ``~/unmute-bench`` on a cluster, else ""."""
    env = os.environ.get("UNMUTE_HOME", "").strip()
    if env:
        return env.rstrip("/") if is_url(env) else str(Path(env).expanduser().resolve())
    if cluster:
        return str(Path(DEFAULT_CLUSTER_HOME).expanduser().resolve())
    return ""


def location(kind: str, cluster: bool) -> str:
    """The default location of ``kind`` (outputs root, data root or store)."""
    if kind not in KINDS:
        raise ValueError(f"unknown location kind {kind!r}; valid: {', '.join(KINDS)}")
    env = os.environ.get(ENV[kind], "").strip()
    if env:
        return env
    root = home(cluster)
    if root:
        return f"{root}/{UNDER_HOME[kind]}"
    return LAPTOP[kind]


def override_address(overrides: list[str] | tuple[str, ...]) -> str:
    """The ``ray.address=...`` given on the command line, if any."""
    for item in overrides:
        match = re.fullmatch(r"\+{0,2}ray\.address=(.*)", item.strip())
        if match:
            return match.group(1).strip().strip("'\"")
    return ""


def register_resolver(cluster: bool) -> None:
    """``${unmute_path:outputs|data|store}`` in the sweep YAML resolves through :func:`location`."""
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver(
        "unmute_path", lambda kind: location(kind, cluster), replace=True, use_cache=False
    )


def mirror_dir(url: str) -> Path:
    """The local working copy of an output folder that lives at ``url`` (S3)."""
    base = os.environ.get("UNMUTE_MIRROR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "unmute-bench", "mirror"
    )
    digest = hashlib.sha1(url.encode()).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", url.split("://", 1)[-1].rstrip("/"))[-60:]
    return Path(base) / f"{name}-{digest}"


@dataclass(frozen=True)
class Locations:
    """Every place a sweep reads or writes, for the driver's log and the dry run."""

    cluster: str
    outputs: str
    mirror: str
    data: str
    store: str
    tune: str
    mlflow: str

    def lines(self) -> list[str]:
        out = [f"outputs: {self.outputs}"]
        if self.mirror:
            out.append(f"local mirror of the outputs: {self.mirror}")
        out += [
            f"data:    {self.data}",
            f"store:   {self.store}",
            f"tune:    {self.tune}",
            f"mlflow:  {self.mlflow}",
        ]
        return out

    def in_job_copy(self) -> list[str]:
        """Locations that would vanish with the job's working-dir copy."""
        return [
            line
            for line, value in (
                ("outputs", self.outputs),
                ("data", self.data),
                ("store", self.store),
                ("tune", self.tune),
            )
            if value and not is_url(value) and in_job_copy(value)
        ]


def locations(cfg) -> Locations:
    """The resolved locations of a :class:`~orchestrator.config.SweepConfig`."""
    return Locations(
        cluster=cluster_reason(cfg.ray.address),
        outputs=cfg.out_url or str(cfg.out_dir),
        mirror=str(cfg.out_dir) if cfg.out_url else "",
        data=cfg.data_root,
        store=cfg.store_url,
        tune=cfg.tune_storage,
        mlflow=cfg.tracking_uri,
    )


def tune_filesystem(location: str):
    """``(storage_path, storage_filesystem)`` for Ray Tune.

    A URL goes through fsspec (s3fs), wrapped as a pyarrow filesystem: the same client, endpoint
    (``AWS_ENDPOINT_URL``) and credentials as the store, and small files written with one PUT
    (pyarrow's own S3 client completes even empty files as multipart uploads, which some S3
    servers reject). A local path is returned as is, with no filesystem."""
    if not is_url(location):
        return location, None
    import fsspec
    import pyarrow.fs as pafs

    fs, path = fsspec.core.url_to_fs(location)
    return path.rstrip("/"), pafs.PyFileSystem(pafs.FSSpecHandler(fs))
