"""Packaging that pyproject.toml cannot say: files outside the packages that the wheel carries.

The layout keeps ``sweeps/`` at the repository root (the only place for YAML); the wheel carries
it as ``orchestrator/sweeps`` so an installed package finds its sweeps through
``importlib.resources`` from any folder (``orchestrator.config.sweeps_dir``). The measured unit
costs behind ``--dry-run``'s price (``benchmarks/costs.json``) go in as ``orchestrator/costs.json``,
so an installed package (the container image included) prices its plans too.
"""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

COSTS = Path("benchmarks") / "costs.json"


class BuildPy(build_py):
    """build_py, plus ``benchmarks/costs.json`` as ``orchestrator/costs.json``."""

    def run(self) -> None:
        super().run()
        # An editable install reads the checkout's benchmarks/costs.json (orchestrator/cost.py).
        if getattr(self, "editable_mode", False) or not COSTS.exists():
            return
        target = Path(self.build_lib) / "orchestrator" / "costs.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        self.copy_file(str(COSTS), str(target))


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
    cmdclass={"build_py": BuildPy},
)
