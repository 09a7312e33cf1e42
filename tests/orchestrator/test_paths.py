"""Where a sweep's outputs, data, store and Tune state live: laptop defaults, the stable root on a
cluster or in a Ray job (never the job's working-dir copy), S3 with a local mirror."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import paths
from orchestrator.config import load

ENV = (
    "UNMUTE_HOME", "UNMUTE_OUT_ROOT", "UNMUTE_DATA", "UNMUTE_STORE", "UNMUTE_TUNE_STORAGE",
    "RAY_ADDRESS", paths.JOB_CONFIG_ENV, "UNMUTE_MIRROR", "MLFLOW_TRACKING_URI",
)  # fmt: skip


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for var in ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.chdir(tmp_path)


def test_laptop_keeps_the_relative_layout(tmp_path):
    cfg = load("quickstart", [], build_probes=False)
    assert cfg.out_dir == tmp_path / "outputs" / "quickstart"
    assert cfg.data_root == str(tmp_path / "data")
    assert cfg.store_url == str(tmp_path / "outputs" / "_store")
    assert cfg.tune_storage == str(tmp_path / "outputs" / "quickstart" / "tune")
    assert cfg.tracking_uri.endswith("outputs/quickstart/mlflow.db")
    assert paths.locations(cfg).cluster == ""


@pytest.mark.parametrize("how", ["env", "override"])
def test_address_local_is_a_private_ray_not_a_cluster(how, monkeypatch, tmp_path):
    """``RAY_ADDRESS=local`` (Ray's own word for "start one here") keeps the laptop layout."""
    overrides = ["ray.address=local"] if how == "override" else []
    if how == "env":
        monkeypatch.setenv("RAY_ADDRESS", "local")
    cfg = load("quickstart", overrides, build_probes=False)
    assert cfg.out_dir == tmp_path / "outputs" / "quickstart"
    assert paths.locations(cfg).cluster == ""


@pytest.mark.parametrize("how", ["job", "address", "override", "job_copy"])
def test_on_a_cluster_everything_resolves_under_the_stable_root(how, monkeypatch, tmp_path):
    overrides = []
    if how == "job":
        monkeypatch.setenv(paths.JOB_CONFIG_ENV, "{}")
    elif how == "address":
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    elif how == "override":
        overrides = ["ray.address=127.0.0.1:6379"]
    else:  # the cwd of a `ray job submit --working-dir` driver
        copy = tmp_path / "session_x" / "runtime_resources" / "working_dir_files" / "_ray_pkg_1"
        copy.mkdir(parents=True)
        monkeypatch.chdir(copy)
    cfg = load("quickstart", overrides, build_probes=False)
    root = tmp_path / "user" / "unmute-bench"
    assert cfg.out_dir == root / "outputs" / "quickstart"
    assert cfg.data_root == str(root / "data")
    assert cfg.store_url == str(root / "store")
    assert cfg.tune_storage == str(root / "outputs" / "quickstart" / "tune")
    assert str(root / "outputs" / "quickstart" / "mlflow.db") in cfg.tracking_uri
    where = paths.locations(cfg)
    assert where.cluster and where.in_job_copy() == []


def test_a_relative_out_on_a_cluster_is_taken_under_the_stable_root(monkeypatch, tmp_path):
    monkeypatch.setenv(paths.JOB_CONFIG_ENV, "{}")
    monkeypatch.setenv("UNMUTE_HOME", str(tmp_path / "stable"))
    cfg = load("quickstart", [], out_dir="runs/a", build_probes=False)
    assert cfg.out_dir == tmp_path / "stable" / "runs" / "a"


def test_specific_variables_override_the_root(monkeypatch, tmp_path):
    monkeypatch.setenv("UNMUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("UNMUTE_STORE", "s3://bucket/store")
    monkeypatch.setenv("UNMUTE_TUNE_STORAGE", "s3://bucket/tune")
    cfg = load("quickstart", [], build_probes=False)
    assert cfg.out_dir == tmp_path / "home" / "outputs" / "quickstart"
    assert cfg.store_url == "s3://bucket/store"
    assert cfg.tune_storage == "s3://bucket/tune"


def test_outputs_on_s3_work_in_a_local_mirror(monkeypatch, tmp_path):
    monkeypatch.setenv("UNMUTE_HOME", "s3://bucket/home")
    monkeypatch.setenv("UNMUTE_MIRROR", str(tmp_path / "mirror"))
    cfg = load("quickstart", [], build_probes=False)
    assert cfg.out_url == "s3://bucket/home/outputs/quickstart"
    assert cfg.out_dir.parent == tmp_path / "mirror"
    assert cfg.data_root == "s3://bucket/home/data"
    assert cfg.store_url == "s3://bucket/home/store"
    assert cfg.tune_storage == "s3://bucket/home/outputs/quickstart/tune"
    assert cfg.tracking_uri == f"sqlite:///{cfg.out_dir / 'mlflow.db'}"
    # the same URL always maps to the same mirror; another URL to another one
    assert paths.mirror_dir(cfg.out_url) == cfg.out_dir
    assert paths.mirror_dir("s3://bucket/other") != cfg.out_dir


def test_a_location_inside_the_job_copy_is_flagged(tmp_path):
    inside = tmp_path / "runtime_resources" / "working_dir_files" / "_ray_pkg_1" / "outputs"
    where = paths.Locations("", str(inside), "", "s3://b/data", str(tmp_path), str(inside), "")
    assert where.in_job_copy() == ["outputs", "tune"]


def test_tune_filesystem_keeps_local_paths_and_wraps_urls(tmp_path):
    assert paths.tune_filesystem(str(tmp_path)) == (str(tmp_path), None)
    path, fs = paths.tune_filesystem("memory://bucket/tune/")
    assert path.endswith("bucket/tune") and fs is not None


def test_home_is_documented_in_base_yaml():
    text = (Path(paths.__file__).parent.parent / "sweeps" / "base.yaml").read_text()
    assert "${unmute_path:outputs}" in text and "UNMUTE_HOME" in text
