"""The installed package carries its sweeps: what the image (Dockerfile) relies on.

A wheel is built from the checkout and installed into a fresh venv (``--system-site-packages``
for the dependencies, ``--no-deps``); run from an empty folder it lists the sweeps and plans
``full_benchmark``. The precedence of ``sweeps_dir`` (UNMUTE_SWEEPS / --config-dir, ./sweeps,
the checkout, the wheel) is tested without building anything.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from orchestrator.config import ConfigError, list_sweeps, sweeps_dir

ROOT = Path(__file__).resolve().parent.parent


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "UNMUTE_SWEEPS")}
    return {**env, **extra}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The python of a venv holding only the wheel of this checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy: building in place would leave build/ in the checkout
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".git", "outputs", "data", "build", "*.egg-info", "tests"),
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp / "dist"), str(src)],
        check=True, env=_clean_env(),
    )  # fmt: skip
    (wheel,) = (tmp / "dist").glob("unmute_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "orchestrator/sweeps/base.yaml" in names
    assert "orchestrator/sweeps/probe/protobin.yaml" in names
    assert "orchestrator/costs.json" in names, "the installed --dry-run prices its plan"
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True, env=_clean_env(),
    )  # fmt: skip
    return python


def _run(python: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "orchestrator.sweep", *args],
        cwd=cwd, capture_output=True, text=True, timeout=600, check=False,
        env=_clean_env(RAY_AUTH_MODE="disabled", **env),
    )  # fmt: skip


@pytest.mark.integration
def test_installed_wheel_finds_its_sweeps_from_any_folder(installed, tmp_path):
    code = "import orchestrator, orchestrator.config as c; print(orchestrator.__file__, c.sweeps_dir())"
    where = subprocess.run(
        [str(installed), "-c", code],
        cwd=tmp_path, capture_output=True, text=True, check=True, env=_clean_env(),
    ).stdout.split()  # fmt: skip
    venv = installed.parent.parent
    assert all(Path(p).is_relative_to(venv) for p in where), f"not the wheel's copy: {where}"
    listed = _run(installed, tmp_path, "--list")
    assert listed.returncode == 0, listed.stderr
    sweeps = listed.stdout.split("Sweeps:")[1].split()
    assert {"quickstart", "full_benchmark"} <= set(sweeps)
    planned = _run(installed, tmp_path, "full_benchmark", "--dry-run")
    output = planned.stdout + planned.stderr
    assert "sweep full_benchmark: 9 encoders x 14 datasets x 11 probes" in output, output[-3000:]
    assert "price (unit costs measured on" in output, "the wheel carries benchmarks/costs.json"
    # Planned; the pre-flight may then list what an empty folder lacks (staged data, weights).
    assert planned.returncode == 0 or (planned.returncode == 2 and "pre-flight:" in output)
    assert not list(tmp_path.iterdir()), "a dry run writes nothing"


@pytest.mark.integration
def test_config_dir_overrides_the_packaged_sweeps(installed, tmp_path):
    mine = tmp_path / "mine"
    shutil.copytree(ROOT / "sweeps", mine)
    (mine / "tiny.yaml").write_text((mine / "quickstart.yaml").read_text().replace(
        "name: quickstart", "name: tiny"))  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    listed = _run(installed, work, "--config-dir", str(mine), "--list")
    assert listed.returncode == 0, listed.stderr
    assert "tiny" in listed.stdout.split("Sweeps:")[1].split()
    bad = _run(installed, work, "--config-dir", str(tmp_path / "nowhere"), "--list")
    assert bad.returncode == 2 and "holds no base.yaml" in bad.stderr


def test_sweeps_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("UNMUTE_SWEEPS", raising=False)
    monkeypatch.chdir(tmp_path)
    assert sweeps_dir() == ROOT / "sweeps", "a checkout uses its own sweeps/"
    local = tmp_path / "sweeps"
    shutil.copytree(ROOT / "sweeps", local)
    (local / "local_only.yaml").write_text("defaults: [base, _self_]\nname: local_only\n")
    assert sweeps_dir() == local and "local_only" in list_sweeps(), "./sweeps overrides"
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(ROOT / "sweeps", elsewhere)
    monkeypatch.setenv("UNMUTE_SWEEPS", str(elsewhere))
    assert sweeps_dir() == elsewhere and "local_only" not in list_sweeps(), "UNMUTE_SWEEPS wins"
    monkeypatch.setenv("UNMUTE_SWEEPS", str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="holds no base.yaml"):
        sweeps_dir()
