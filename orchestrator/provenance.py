"""Provenance stamped on every result row and MLflow run: code, libraries, machine."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "torchaudio", "timm", "ray", "optuna", "mlflow", "polars", "numpy")


@functools.cache
def git_sha() -> str:
    """The commit the code runs from (``$UNMUTE_GIT_SHA`` in images without .git)."""
    if os.environ.get("UNMUTE_GIT_SHA"):
        return os.environ["UNMUTE_GIT_SHA"]
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}{'-dirty' if dirty else ''}" if sha else "unknown"


@functools.cache
def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def provenance_tags() -> dict[str, str]:
    """Tags for MLflow runs and columns for result rows."""
    return {
        "git_sha": git_sha(),
        "host": platform.node(),
        "python": platform.python_version(),
        **{f"version.{k}": v for k, v in library_versions().items()},
    }
