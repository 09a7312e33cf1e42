"""The end of a user's run: no lock take-over warning after a clean finish, the report's path
instead of its text, and a last line whose time is the command's wall time."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from orchestrator.outlock import OutDirLock
from orchestrator.sweep import _print_summary


def test_no_take_over_warning_after_a_clean_finish(tmp_path, caplog):
    out = tmp_path / "out"
    code = f"from orchestrator.outlock import OutDirLock\nwith OutDirLock({str(out)!r}): pass\n"
    subprocess.run([sys.executable, "-c", code], check=True)
    with caplog.at_level(logging.WARNING, logger="orchestrator.outlock"), OutDirLock(out):
        pass
    assert not [r for r in caplog.records if "taking over" in r.getMessage()]


def test_summary_prints_the_report_path_and_the_command_wall_time(tmp_path, capsys):
    report = tmp_path / "report" / "report.md"
    report.parent.mkdir()
    report.write_text("# Probing results\n\nTHE WHOLE REPORT\n")
    cfg = SimpleNamespace(out_dir=tmp_path)
    code = (
        "import time, sys\nfrom types import SimpleNamespace\nfrom pathlib import Path\n"
        "from orchestrator.sweep import _print_summary\ntime.sleep(3)\n"
        f"_print_summary(SimpleNamespace(out_dir=Path({str(tmp_path)!r})), "
        f"{{'report': Path({str(report)!r})}}, [], 0.5, 'MLflow UI: hint')\n"
    )
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    wall = time.monotonic() - start
    lines = done.stdout.strip().splitlines()
    assert "THE WHOLE REPORT" not in done.stdout
    assert f"Report:  {report}" in lines
    seconds = int(lines[-1].split()[2])
    assert lines[-1].startswith("finished in") and abs(seconds - wall) <= 1.5, (lines[-1], wall)
    _print_summary(cfg, {"report": report}, ["s1: boom"], 0.0, "hint")
    assert "1 studies failed" in capsys.readouterr().out


_TRACKER = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
from orchestrator.console import quiet_libraries
quiet_libraries(sys.argv[1] == "verbose")
logging.getLogger("orchestrator.sweep").info("stage line")
from orchestrator.tracking import SweepTracker
SweepTracker(f"sqlite:///{sys.argv[2]}/mlflow.db", "exp", sweep_id="s1", sweep_name="q",
             out_dir=sys.argv[2], config={})
"""


@pytest.mark.slow  # MLflow's import and migrations: ~40 s per process on a loaded 2-core machine
def test_mlflow_database_setup_lines_only_with_verbose(tmp_path):
    def output(mode: str) -> str:
        folder = tmp_path / mode
        folder.mkdir()
        done = subprocess.run(
            [sys.executable, "-c", _TRACKER, mode, str(folder)],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout + done.stderr

    quiet, verbose = output("quiet"), output("verbose")
    assert "Creating initial MLflow database tables" in verbose
    assert "Creating initial MLflow database tables" not in quiet
    assert "stage line" in quiet  # the sweep's own stage lines still show


def test_rerun_of_a_finished_sweep_only_verifies(tmp_path, capsys, monkeypatch):
    import ray

    from orchestrator.config import load
    from orchestrator.rerun import stamp_finished, verified
    from orchestrator.sweep import main
    from tests.orchestrator.test_dataset_checks import make_folder

    folder = make_folder(tmp_path / "ds")
    out = tmp_path / "out"
    args = ["quickstart", "encoder=[eat]", "probe=[linear]", "dataset=[synth_control]",
            f"+dataset.synth_control.source={folder}"]  # fmt: skip
    cfg = load(args[0], args[1:], out_dir=str(out))
    (out / "report").mkdir(parents=True)
    (out / "results.csv").write_text("backbone,dataset,probe,seed,score\neat,d,linear,0,0.5\n")
    (out / "report" / "report.md").write_text("# Probing results\n")
    stamp_finished(cfg, 1)

    def refuse(*a, **k):
        raise AssertionError("ray.init called for a finished sweep")

    monkeypatch.setattr(ray, "init", refuse)
    assert main([*args, "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("sweep quickstart already finished; skipping: 1 result rows")
    assert lines[-1].startswith("finished in")
    # another override, or an edited results file, is not the finished sweep: it runs again
    assert verified(load(args[0], [*args[1:], "train.epochs=3"], out_dir=str(out))) is None
    (out / "results.csv").write_text("backbone,dataset,probe,seed,score\neat,d,linear,0,0.9\n")
    assert verified(cfg) is None
