"""Provenance stamped on every result row and MLflow run: code, libraries, machine.

Under ``ray job submit --working-dir .`` Ray leaves ``.git`` out of the job's package, so the
commit cannot be read from the tree there. Two things name the code instead:

- ``code_digest``: a sha256 over the package sources (``backbones/``, ``probes/``,
  ``orchestrator/``) and ``sweeps/``, computed from the files that actually run. Always there.
- ``git_commit`` and ``git_dirty``: from ``$UNMUTE_GIT_SHA`` (the README's job command and the
  image set it; a ``-dirty`` suffix or ``$UNMUTE_GIT_DIRTY=1`` marks uncommitted changes), else
  from ``.git`` next to the sources. ``unknown`` where neither exists.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

LIBRARIES = ("torch", "torchaudio", "timm", "ray", "optuna", "mlflow", "polars", "numpy")
ROOT = Path(__file__).resolve().parent.parent
CODE = (("backbones", ("*.py",)), ("probes", ("*.py",)), ("orchestrator", ("*.py",)))
CONFIG = (("sweeps", ("*.yaml", "*.yml")),)
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Commit:
    """The commit the code came from, as best found; ``sha`` is ``unknown`` where none is."""

    sha: str
    dirty: bool | None  # None: not known
    source: str  # "UNMUTE_GIT_SHA", ".git" or ""

    def label(self) -> str:
        """``<sha>`` or ``<sha>-dirty`` (``unknown`` where no commit was found)."""
        return f"{self.sha}-dirty" if self.dirty and self.sha != UNKNOWN else self.sha


def _files(root: Path) -> list[Path]:
    found: set[Path] = set()
    for folder, patterns in CODE + CONFIG:
        for pattern in patterns:
            found.update(p for p in (root / folder).rglob(pattern) if p.is_file())
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def digest_of(root: Path) -> str:
    """sha256 (first 16 hex digits) of the sources and sweeps/ YAML under ``root``."""
    h = hashlib.sha256()
    for path in _files(root):
        if "__pycache__" in path.parts:
            continue
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@functools.cache
def code_digest() -> str:
    """The digest of the code this process runs (see :func:`digest_of`)."""
    return digest_of(ROOT)


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], check=False, cwd=ROOT, capture_output=True, text=True, timeout=10
    ).stdout.strip()


@functools.cache
def commit() -> Commit:
    """The best commit found: ``$UNMUTE_GIT_SHA``, else ``.git`` beside the sources."""
    env = os.environ.get("UNMUTE_GIT_SHA", "").strip()
    if env:
        sha, dirty = (env[: -len("-dirty")], True) if env.endswith("-dirty") else (env, None)
        flag = os.environ.get("UNMUTE_GIT_DIRTY", "").strip().lower()
        if flag in ("1", "true", "yes"):
            dirty = True
        elif flag in ("0", "false", "no") and dirty is None:
            dirty = False
        return Commit(sha, dirty, "UNMUTE_GIT_SHA")
    if not (ROOT / ".git").exists():
        return Commit(UNKNOWN, None, "")
    try:
        sha = _git("rev-parse", "HEAD")
        status = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return Commit(UNKNOWN, None, "")
    return Commit(sha, bool(status), ".git") if sha else Commit(UNKNOWN, None, "")


def git_sha() -> str:
    """The commit the code runs from, ``-dirty`` appended for uncommitted changes."""
    return commit().label()


@functools.cache
def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def code_columns() -> dict[str, str]:
    """``code_digest``, ``git_commit``, ``git_dirty`` (``true``/``false``/``unknown``)."""
    found = commit()
    dirty = UNKNOWN if found.dirty is None else str(found.dirty).lower()
    return {"code_digest": code_digest(), "git_commit": found.sha, "git_dirty": dirty}


def mlflow_git_tags() -> dict[str, str]:
    """MLflow's standard ``mlflow.source.git.commit`` tag, where a commit is known."""
    found = commit()
    return {} if found.sha == UNKNOWN else {"mlflow.source.git.commit": found.sha}


def provenance_tags() -> dict[str, str]:
    """Tags for MLflow runs and columns for result rows."""
    return {
        "git_sha": git_sha(),
        **code_columns(),
        "host": platform.node(),
        "python": platform.python_version(),
        **{f"version.{k}": v for k, v in library_versions().items()},
    }
