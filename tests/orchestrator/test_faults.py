"""Fault injection (issue #12 Tests): a tiny quickstart sweep killed at each stage, its store
rotted, or started twice on one folder; the re-run must lose nothing.

One undisturbed run per module is the reference; each case starts the same command in its own
process group, SIGKILLs it when the output folder shows the stage (see
``benchmarks/faults.py`` for the file rules), re-runs it and checks: exit 0, results equal to
the reference (only where the reproducible mode exists; without it the search is timing
dependent and only the row set is compared), no finished trial run twice, no MLflow run left
RUNNING, ``selected=true`` runs equal to the result rows, no temp folders left behind.
Each case is one or two tiny sweeps (about a minute each on an idle 2-core machine);
``UNMUTE_FAULTS=search,store`` runs a subset (``rot-live``: the store rots while trials read
it; the same sweep heals it and must end with the undisturbed results; ``worker``: the
sweep's trial workers are SIGKILLed mid-search and the same sweep must finish by itself).
"""

from __future__ import annotations

import os

import pytest

from benchmarks.faults import FAULTS, clean_run, inject, reproducible_override

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    work = tmp_path_factory.mktemp("faults")
    return work, clean_run(work, work / "data")


# A kill during data generation is left to benchmarks/faults.py (generation is idempotent and
# test_store_heal checks that it leaves no temp folder), to keep CI well under 30 minutes.
DEFAULT = [f for f in FAULTS if f != "generation"]
SELECTED = [f for f in os.environ.get("UNMUTE_FAULTS", ",".join(DEFAULT)).split(",") if f]


@pytest.mark.parametrize("fault", SELECTED)
def test_sweep_survives_fault(fault, reference):
    work, clean = reference
    o = inject(fault, work, clean)
    log = work / fault / "out.rerun.log"
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    assert o.hit, f"{fault}: the stage was never seen (sweep finished before the kill?)"
    assert o.rc == 0, tail
    assert o.rows_lost == 0 and o.rows > 0, tail
    assert o.finished_twice == 0, f"{o.finished_twice} finished trials were run again"
    assert o.trials_failed == 0, f"{o.trials_failed} trials recorded as failed: {tail}"
    assert o.running_left == 0, f"{o.running_left} MLflow runs left RUNNING"
    assert o.selected_ok, "selected=true runs differ from the result rows"
    assert o.temp_left == 0, "temporary folders left behind"
    if fault == "rot-live":  # the heal really ran: trials found the rot and reran
        assert o.trials_redone >= 1, tail
    if not reproducible_override():
        pytest.xfail("no reproducible search mode yet (search.reproducible): values not compared")
    assert o.rows_differ == 0, f"{o.rows_differ} result rows differ from the undisturbed run"
