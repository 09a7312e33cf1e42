"""Pre-flight and the dry run: every problem listed at once, exit 2, before any Ray work; the
plan is compact and priced; --list and --dry-run import no torch, ray or mlflow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator import preflight
from orchestrator.config import load
from orchestrator.cost import asha_epochs, load_costs, price
from orchestrator.plan import make_plan

CPU_NODE = {"CPU": 2.0, "memory": 1e9, "node:127.0.0.1": 1.0}


def test_a_gpu_request_on_a_cpu_only_cluster_is_refused():
    requests = {"a trial": {"CPU": 1.0}, "an extraction": {"CPU": 1.0, "GPU": 1.0}}
    problems = preflight.resource_problems(requests, [CPU_NODE])
    assert len(problems) == 1
    assert "an extraction asks for {CPU: 1, GPU: 1}" in problems[0]
    assert "{CPU: 2}" in problems[0]  # the cluster's resources, without Ray's internal ones


def test_an_autoscaler_group_with_gpus_makes_the_request_feasible():
    requests = {"an extraction": {"CPU": 8.0, "GPU": 1.0}}
    assert preflight.resource_problems(requests, [CPU_NODE, {"CPU": 16.0, "GPU": 4.0}]) == []
    assert preflight.resource_problems({"a trial": {"CPU": 4.0}}, [CPU_NODE])  # too many CPUs


def test_demands_follow_the_config():
    cfg = load("full_benchmark", [], build_probes=False)
    assert preflight.demands(cfg) == {
        "a trial": {"CPU": 2.0, "GPU": 0.25},
        "an extraction": {"CPU": 8.0, "GPU": 1.0},
    }


def test_every_problem_is_listed_at_once(monkeypatch, tmp_path):
    for var in ("BEATS_CHECKPOINT", "DASHENG_CHECKPOINT"):  # other tests may leave them set
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EAT_CHECKPOINT", str(tmp_path / "missing.pt"))
    cfg = load(
        "quickstart",
        [
            "encoder=[eat,beats,dasheng]",
            "dataset=[synth_events,esc50]",
            "encoder_defaults.checkpoint=null",
            "+probe.linear.hparams.dropuot=0.1",
        ],
        out_dir=str(tmp_path / "out"),
        build_probes=False,
    )
    problems = preflight.check(cfg, with_cluster=False)
    text = "\n".join(problems)
    assert "encoder eat ($EAT_CHECKPOINT): checkpoint file" in text and "missing.pt" in text
    assert "encoder beats: no checkpoint" in text and "BEATS_CHECKPOINT=PATH" in text
    assert "dasheng" not in text  # an https official download is fetched by the task
    assert "dataset esc50" in text and "--prepare" in text
    assert "synth_events" not in text  # generated on first use
    assert "probe linear: no hyperparameter 'dropuot'" in text
    assert len(problems) == 4


def test_hf_checkpoint_format_is_checked(monkeypatch):
    assert preflight._checkpoint_problem("hf://owner/repo") != ""
    assert preflight._checkpoint_problem("hf://owner/repo/file.pt@main") == ""


def test_infeasible_watch_fails_only_after_the_timeout():
    pending = [({"CPU": 1.0, "GPU": 1.0}, 3), ({"CPU": 1.0}, 5)]
    watch = preflight.InfeasibleWatch(
        timeout_s=60, pending=lambda: pending, nodes=lambda: [CPU_NODE], on_infeasible=print
    )
    assert watch.poll(now=100.0) == ""
    assert watch.poll(now=150.0) == ""
    message = watch.poll(now=161.0)
    assert "3 x {CPU: 1, GPU: 1}" in message and "{CPU: 2}" in message
    assert "{CPU: 1}," not in message  # the feasible demand is not blamed
    pending.clear()  # once placed (or gone), the clock restarts
    assert watch.poll(now=500.0) == ""


def test_asha_expected_epochs():
    assert asha_epochs(30, 30, 3) == 30  # no rung below the end
    assert asha_epochs(9, 1, 3) == pytest.approx(1 + 2 / 3 + 6 / 9)
    assert asha_epochs(30, 3, 3) < 30 / 3


def test_price_scales_with_the_plan():
    costs = load_costs()
    assert "H200" in costs["device"]
    small = load("full_benchmark", ["encoder=[eat]", "dataset=[esc50]", "probe=[linear]"],
                 build_probes=False)  # fmt: skip
    big = load("full_benchmark", ["encoder=[eat,beats]", "dataset=[esc50]", "probe=[linear]"],
               build_probes=False)  # fmt: skip
    p1 = price(small, make_plan(small), gpus=1, costs=costs)
    p2 = price(big, make_plan(big), gpus=2, costs=costs)
    assert p1.extract_gpu_hours > 0 and p1.trial_gpu_hours > 0 and p1.store_bytes > 0
    assert p2.trial_gpu_hours > 1.9 * p1.trial_gpu_hours
    assert p2.wall_hours == pytest.approx((p2.extract_gpu_hours + p2.trial_gpu_hours) / 2)
    # 1,200 + 400 + 400 ESC-50 clips of 5 s, 256 tokens of 768 fp16 (+ cls) each
    assert p1.store_bytes == 2000 * (32 * 8 * 768 + 768) * 2
    assert p1.missing == ()


_NO_HEAVY = (
    "import sys\n"
    "from orchestrator.sweep import main\n"
    "code = main(sys.argv[1:])\n"
    "heavy = sorted(m for m in ('torch', 'ray', 'mlflow', 'optuna', 'polars') if m in sys.modules)\n"
    "print('HEAVY', heavy)\n"
    "sys.exit(code)\n"
)


@pytest.mark.parametrize(
    ("args", "heavy"),
    [(["--list"], "[]"), (["full_benchmark", "--dry-run", "--gpus", "8"], "['torch']")],
    ids=["list", "dry-run"],
)
def test_list_and_dry_run_import_no_heavy_library(args, heavy):
    """--list imports nothing heavy; --dry-run builds every probe (torch) but starts no Ray and
    touches no MLflow."""
    done = subprocess.run(
        [sys.executable, "-c", _NO_HEAVY, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert f"HEAVY {heavy}" in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]


def test_dry_run_prints_a_compact_plan_with_a_price_and_exits_2_on_problems(capsys):
    from orchestrator.sweep import main

    code = main(["full_benchmark", "--dry-run", "--gpus", "8"])
    out = capsys.readouterr().out
    assert code == 2  # official checkpoints and datasets are not here
    assert len(out.splitlines()) < 80  # not one line per job
    assert "per encoder:" in out and "per dataset:" in out
    assert "GPU-hours" in out and "on 8 GPU(s)" in out and "H200" in out
    assert "GB of fp16 token maps" in out
    assert "pre-flight:" in out and "nothing was started" in out
    assert "extraction jobs: 378" in out and "studies:         1386" in out


def test_dry_run_verbose_lists_every_job(capsys, tmp_path):
    from orchestrator.sweep import main

    assert main(["quickstart", "--out", str(tmp_path), "--dry-run", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "eat@random-tiny / synth_events / train" in out
    assert "pre-flight: OK: probe values at every encoder width and search corner" in out
