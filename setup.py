"""Packaging that pyproject.toml cannot say: the top-level ``sweeps/`` folder ships in the wheel.

The layout keeps ``sweeps/`` at the repository root (the only place for YAML); the wheel carries
it as ``orchestrator/sweeps`` so an installed package finds its sweeps through
``importlib.resources`` from any folder (``orchestrator.config.sweeps_dir``).
"""

from pathlib import Path

from setuptools import find_packages, setup

SWEEPS = "orchestrator.sweeps"
groups = sorted(
    p.name for p in Path("sweeps").iterdir() if p.is_dir() and not p.name.startswith(".")
)

setup(
    packages=[
        *find_packages(include=["orchestrator*", "probes*", "backbones*"]),
        SWEEPS,
        *(f"{SWEEPS}.{group}" for group in groups),
    ],
    package_dir={SWEEPS: "sweeps"},
)
