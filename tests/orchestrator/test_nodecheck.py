"""Fast checks of the multi-node pieces (issue #25) without a cluster: which locations the node
check covers, its markers, the code version in every row, and a store entry a node cannot find
reported as missing on that node (never as corruption). The two-node runs are in
test_cluster_nodes.py."""

from __future__ import annotations

import shutil
import types
from pathlib import Path

import pytest

from orchestrator import nodecheck, provenance
from orchestrator.store import StoreKey
from orchestrator.trial import MISSING_ON_NODE, StoreEntryLost, TrialSpec, _probe_data


def _cfg(tmp_path: Path, **over):
    base = {
        "data_root": str(tmp_path / "data"),
        "store_url": "s3://bench/store",
        "tune_storage": str(tmp_path / "out" / "tune"),
        "out_url": "",
        "out_dir": tmp_path / "out",
        "tracking_uri": f"sqlite:///{tmp_path}/out/mlflow.db",
    }
    return types.SimpleNamespace(**{**base, **over})


def test_places_are_the_local_locations_once(tmp_path):
    names = [p.name for p in nodecheck.places(_cfg(tmp_path))]
    assert names == ["data", "tune", "outputs"]  # s3 store skipped; mlflow.db shares outputs
    http = _cfg(tmp_path, tracking_uri="http://mlflow:5000", out_url="s3://b/out")
    assert [p.name for p in nodecheck.places(http)] == ["data", "tune"]


def test_markers_read_back_and_missing_ones_named(tmp_path):
    where = nodecheck.places(_cfg(tmp_path))
    markers = nodecheck.write_markers(where, "tok")
    assert nodecheck.read_markers(markers) == []
    shutil.rmtree(tmp_path / "data")
    assert nodecheck.read_markers(markers) == [
        str(tmp_path / "data" / nodecheck.MARKER_DIR / "tok")
    ]
    text = nodecheck.Unseen(where[0], ("10.0.0.7 (abc)",)).message()
    assert f"data location {tmp_path / 'data'}" in text and "10.0.0.7" in text
    assert "UNMUTE_DATA" in text and "s3://" in text


def test_entry_missing_on_a_node_is_not_corruption(tmp_path):
    key = StoreKey("eat", "w", "f", "synth", "1", "train")
    spec = TrialSpec("s1", "search", "linear", {}, "multiclass", 3, str(tmp_path / "store"),
                     {"train": key}, 1, 8, 0)  # fmt: skip
    with pytest.raises(StoreEntryLost) as err:
        _probe_data(spec, "train")
    assert MISSING_ON_NODE in str(err.value) and str(tmp_path / "store") in str(err.value)
    text = nodecheck.missing_on_node(("eat", "synth"), "127.0.0.2", _cfg(tmp_path))
    assert "missing on Ray node 127.0.0.2" in text and "corrupt" not in text


def test_code_digest_follows_sources_and_sweeps(tmp_path):
    for folder in ("orchestrator", "sweeps"):
        (tmp_path / folder).mkdir()
    (tmp_path / "orchestrator" / "a.py").write_text("x = 1\n")
    (tmp_path / "sweeps" / "s.yaml").write_text("a: 1\n")
    first = provenance.digest_of(tmp_path)
    (tmp_path / "sweeps" / "s.yaml").write_text("a: 2\n")
    assert provenance.digest_of(tmp_path) != first
    (tmp_path / "notes.txt").write_text("not code")
    second = provenance.digest_of(tmp_path)
    assert provenance.digest_of(tmp_path) == second


@pytest.mark.parametrize(
    ("env", "sha", "dirty"),
    [({"UNMUTE_GIT_SHA": "abc123-dirty"}, "abc123", "true"),
     ({"UNMUTE_GIT_SHA": "abc123"}, "abc123", "unknown"),
     ({"UNMUTE_GIT_SHA": "abc123", "UNMUTE_GIT_DIRTY": "0"}, "abc123", "false")],
)  # fmt: skip
def test_commit_from_the_job_env(monkeypatch, env, sha, dirty):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    provenance.commit.cache_clear()
    try:
        cols = provenance.code_columns()
        assert (cols["git_commit"], cols["git_dirty"]) == (sha, dirty)
        assert provenance.git_sha() == (f"{sha}-dirty" if dirty == "true" else sha)
        assert provenance.mlflow_git_tags() == {"mlflow.source.git.commit": sha}
    finally:
        provenance.commit.cache_clear()


def test_no_commit_anywhere_is_unknown(monkeypatch, tmp_path):
    monkeypatch.delenv("UNMUTE_GIT_SHA", raising=False)
    monkeypatch.setattr(provenance, "ROOT", tmp_path)  # a job's working-dir copy: no .git
    provenance.commit.cache_clear()
    try:
        assert provenance.code_columns()["git_commit"] == "unknown"
        assert provenance.git_sha() == "unknown" and provenance.mlflow_git_tags() == {}
    finally:
        provenance.commit.cache_clear()
