"""Done-when of issue 18: a user's own encoders and dataset, without touching the package.

From an empty folder outside the checkout, with the wheel installed in a fresh venv, a torch
module in a user file, a ``transformers`` AST built from its config and a HEAR-API module run
through one real sweep each time (``RAY_ADDRESS=local``; and a real ``ray start --head`` +
``ray job submit --working-dir``, the user's files reaching the workers through Ray's runtime
environment) on a user's folder dataset with its own class count (3). Each appears under its
own name in results.csv, the report and MLflow.
"""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import polars as pl
import pytest

from tests.cluster_fixtures import TINY_SEARCH, ray_head  # noqa: F401
from tests.orchestrator.user_folder import write_project
from tests.test_k8s_packaging import _clean_env, installed  # noqa: F401

pytestmark = pytest.mark.integration

NAMES = {"tinybands", "tiny-ast", "hear_tiny"}
ARGS = [
    "quickstart",
    "encoder=[my_encoder.py:TinyBands,hf:tiny-ast,hear:hear_tiny]",
    "dataset=./tones",
    "probe=[linear]",
    *TINY_SEARCH,
]


def _project(root: Path) -> Path:
    """The user's folder: encoder file, HEAR module, dataset and a saved tiny AST."""
    tf = pytest.importorskip("transformers")
    import torch

    project = write_project(root)
    torch.manual_seed(0)
    cfg = tf.ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_mel_bins=32, max_length=100)  # fmt: skip
    tf.ASTModel(cfg).save_pretrained(project / "tiny-ast")
    tf.ASTFeatureExtractor(num_mel_bins=32, max_length=100).save_pretrained(project / "tiny-ast")
    return project


def _with_transformers(python: Path) -> None:
    """The wheel's venv sees the system's packages; make it see transformers where it was
    installed elsewhere (CI installs it system-wide with the test extra)."""
    probe = subprocess.run(
        [str(python), "-c", "import transformers"], capture_output=True, check=False
    )
    if probe.returncode:
        import transformers

        site = subprocess.run(
            [str(python), "-c", "import site; print(site.getsitepackages()[0])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        (Path(site) / "unmute_test_transformers.pth").write_text(
            str(Path(transformers.__file__).parent.parent) + "\n"
        )


def _assert_own_names(out: Path) -> None:
    rows = pl.read_csv(out / "results.csv")
    assert set(rows["encoder"]) == NAMES
    assert set(rows["dataset"]) == {"tones"}
    assert rows["dataset_version"].str.starts_with("folder-").all()
    report = (out / "report" / "report.md").read_text()
    assert all(name in report for name in NAMES) and "tones" in report
    db = sqlite3.connect(out / "mlflow.db")
    tagged = {v for (v,) in db.execute("select value from tags where key = 'encoder'")}
    assert NAMES <= tagged


def test_user_encoders_and_dataset_run_from_an_empty_folder(installed, tmp_path):  # noqa: F811
    _with_transformers(installed)
    project = _project(tmp_path / "project")
    check = subprocess.run(
        [str(installed), "-m", "orchestrator.data", "./tones", "--check", "--no-progress"],
        cwd=project, capture_output=True, text=True, env=_clean_env(), timeout=300, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert "tones: multiclass, 3 classes, accuracy" in check.stdout
    out = tmp_path / "out"
    done = subprocess.run(
        [str(installed), "-m", "orchestrator.sweep", *ARGS, f"out_dir={out}"],
        cwd=project, capture_output=True, text=True, timeout=600, check=False,
        env=_clean_env(RAY_AUTH_MODE="disabled", RAY_ADDRESS="local", PYTHONPATH="."),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _assert_own_names(out)


@pytest.mark.slow
def test_user_encoders_reach_workers_through_ray_job_submit(ray_head, tmp_path):  # noqa: F811
    project = _project(tmp_path / "project")
    home = tmp_path / "home"
    env_vars = {"UNMUTE_HOME": str(home), "RAY_AUTH_MODE": "disabled"}
    out = home / "outputs" / "mine"
    ray_head.submit(
        ["python", "-m", "orchestrator.sweep", *ARGS, f"out_dir={out}"],
        env_vars=env_vars,
        submission_id="user-encoders",
        working_dir=project,
    )
    status, logs = ray_head.wait("user-encoders", timeout=900)
    assert status == "SUCCEEDED", logs[-5000:]
    _assert_own_names(out)
