"""Fault injection against a tiny quickstart sweep: kill it at each stage, damage its store,
start it twice; then re-run and measure what was lost.

    python benchmarks/faults.py [--faults generation,extraction,search,final,report,store,
                                          rot-live,worker,twice] [--workdir DIR] [--keep]

Every fault runs the same small sweep command in a subprocess (its own process group, a private
local Ray, its own store, node cache and MLflow store), decides the stage by watching the output
folder (files that exist under both the old and the new scheduler: generated-data temp folders,
store manifests, Tune ``result.json`` files, ``studies/*/final.parquet``, ``report/``), SIGKILLs
the group, re-runs the same command and compares with one undisturbed run. Printed per fault:
time to recover (the re-run's wall time), trials redone (trial runs that were rerun because they
had not finished: their MLflow run's ``restarts`` tag, plus runs left KILLED), trials recorded
as failed (target 0: a fault is not the trial's fault), finished trials
run twice (target 0), result rows lost and rows whose numbers differ (target 0; equality needs
the reproducible mode), MLflow runs left RUNNING and whether ``selected=true`` runs match the
result rows. ``rot-live`` rots the store while the sweep's trials read it and does not kill:
the same sweep must heal it and finish with the undisturbed results. ``worker`` SIGKILLs the
sweep's trial workers (Ray Tune's ``ImplicitFunc`` actors, each running a pack of trials) once
the search stage shows, and does not kill the sweep: it must retry and finish by itself.

``tests/orchestrator/test_faults.py`` runs the same harness under pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "encoder=[eat]",
    "dataset=[synth_control]",
    "probe=[linear]",
    "dataset.synth_control.options.train_clips=16",
    "dataset.synth_control.options.valid_clips=8",
    "dataset.synth_control.options.test_clips=8",
    "search.trials=3",
    "search.startup_trials=2",
    "search.grace_epochs=1",
    "train.epochs=2",
    "train.batch_size=8",
    "final.seeds=[0]",
]
# Result columns that must be identical between a disturbed and an undisturbed run.
COMPARED = ("score", "val_score", "lr", "weight_decay", "probe_hparams", "config_index")
KEYS = ("backbone", "dataset", "probe", "seed")
STAGES = ("generation", "extraction", "search", "final", "report")
FAULTS = (*STAGES, "store", "rot-live", "worker", "twice")


def reproducible_override() -> list[str]:
    """``search.reproducible=true`` where the sweeps define it (the core scheduler's mode)."""
    base = (ROOT / "sweeps" / "base.yaml").read_text()
    return ["search.reproducible=true"] if "reproducible:" in base else []


@dataclass
class Run:
    out: Path
    data: Path
    store: Path
    cache: Path

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "UNMUTE_DATA": str(self.data),
            "UNMUTE_STORE": str(self.store),
            "UNMUTE_NODE_CACHE": str(self.cache),
            "RAY_ADDRESS": "local",  # a private local Ray, never another engineer's cluster
            "RAY_AUTH_MODE": "disabled",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        cmd = [sys.executable, "-m", "orchestrator.sweep", "quickstart", *TINY,
               *reproducible_override(), "--out", str(self.out)]  # fmt: skip
        return cmd, env

    def start(self, log_name: str) -> subprocess.Popen:
        cmd, env = self.command()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.out.parent / f"{self.out.name}.{log_name}.log", "w")  # noqa: SIM115
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip

    def run(self, log_name: str, timeout: float = 900) -> tuple[int, float]:
        t0 = time.monotonic()
        proc = self.start(log_name)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = 124
        return rc, time.monotonic() - t0

    def log(self, log_name: str) -> str:
        path = self.out.parent / f"{self.out.name}.{log_name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


# -- stage detection (files both schedulers write) -------------------------------------------------
def _results_json(run: Run) -> list[Path]:
    tune = run.out / "tune"
    return [p for p in tune.rglob("result.json") if p.stat().st_size > 0] if tune.exists() else []


def _is_final(path: Path) -> bool:
    if "final" in path.parts or any("final" in p for p in path.parts[-3:]):
        return True
    try:
        params = json.loads((path.parent / "params.json").read_text())
    except (OSError, ValueError):
        return False
    return params.get("stage") == "final" if "stage" in params else "cell" in params


def _ledger_stages(run: Run) -> set[str]:
    """Stages of the trials the driver's ledgers (``studies/*/trials.parquet``) hold."""
    import polars as pl

    stages: set[str] = set()
    for path in run.out.glob("studies/*/trials.parquet"):
        try:
            stages |= set(pl.read_parquet(path.read_bytes(), columns=["stage"])["stage"])
        except (OSError, pl.exceptions.PolarsError):  # being replaced right now
            continue
    return stages


DETECT: dict[str, Callable[[Run], bool]] = {
    "generation": lambda r: any(r.data.glob(".*.tmp-*/audio/*/*")),
    "extraction": lambda r: any(r.store.rglob("done.json")) or any(r.store.rglob("manifest.json")),
    "search": lambda r: (
        "search" in _ledger_stages(r) or any(not _is_final(p) for p in _results_json(r))
    ),
    "final": lambda r: (
        "final" in _ledger_stages(r)
        or any(_is_final(p) for p in _results_json(r))
        or any(r.out.glob("studies/*/final.parquet"))
    ),
    "report": lambda r: (r.out / "report").exists() or (r.out / "results.csv").exists(),
}


def kill_at(run: Run, stage: str, timeout: float = 900) -> bool:
    """Start the sweep, SIGKILL its process group when ``stage`` is seen; True if it was hit."""
    proc = run.start(f"killed-{stage}")
    deadline = time.monotonic() + timeout
    hit = False
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            seen = DETECT[stage](run)
        except OSError:  # a folder vanished while we walked it (shards merged, temp renamed)
            seen = False
        if seen:
            hit = True
            break
        time.sleep(0.1)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        try:  # anything it left behind in its group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()
    return hit


# -- what a re-run preserved -----------------------------------------------------------------------
def results(out: Path) -> dict[tuple, dict[str, str]]:
    import csv

    path = out / "results.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {tuple(r[k] for k in KEYS): {c: r.get(c, "") for c in COMPARED} for r in rows}


def failed_trials(out: Path) -> int:
    """Trials the driver's ledgers record as failed (a fault must not fail a trial)."""
    import polars as pl

    return sum(
        pl.read_parquet(path, columns=["status"])["status"].to_list().count("error")
        for path in out.glob("studies/*/trials.parquet")
    )


def mlflow_state(out: Path) -> dict[str, int]:
    """Trial runs by status, finished trials run twice, RUNNING runs, selected vs final runs."""
    from mlflow.tracking import MlflowClient

    db = out / "mlflow.db"
    if not db.exists():
        return {"running": 0, "killed": 0, "restarted": 0, "finished": 0, "finished_twice": 0,
                "selected": 0}  # fmt: skip
    client = MlflowClient(f"sqlite:///{db}")
    runs = []
    for exp in client.search_experiments():
        runs += client.search_runs([exp.experiment_id], max_results=50000)
    trials = [r for r in runs if r.data.tags.get("kind") == "trial"]
    finished = [r for r in trials if r.info.status == "FINISHED"]
    keys = [
        (r.data.tags.get("study_id"), r.data.tags.get("stage"),
         json.dumps(r.data.params, sort_keys=True))
        for r in finished
    ]  # fmt: skip
    return {
        "running": sum(r.info.status == "RUNNING" for r in runs),
        "killed": sum(r.info.status == "KILLED" for r in trials),
        # a trial rerun because it had not finished reuses its run and counts a restart
        "restarted": sum(int(r.data.tags.get("restarts", "0")) for r in trials),
        "finished": len(finished),
        "finished_twice": len(keys) - len(set(keys)),
        "selected": sum(r.data.tags.get("selected") == "true" for r in finished),
    }


@dataclass
class Outcome:
    fault: str
    hit: bool
    rc: int
    recover_s: float
    trials_redone: int
    trials_failed: int
    finished_twice: int
    rows: int
    rows_lost: int
    rows_differ: int
    running_left: int
    selected_ok: bool
    temp_left: int
    notes: list[str] = field(default_factory=list)


def assess(fault: str, hit: bool, rc: int, seconds: float, run: Run, clean: Path) -> Outcome:
    want, got = results(clean), results(run.out)
    state = mlflow_state(run.out)
    temps = [*run.data.glob(".*.tmp-*"), *run.store.rglob("*.tmp-*"), *run.cache.rglob("*.tmp-*")]
    return Outcome(
        fault=fault,
        hit=hit,
        rc=rc,
        recover_s=round(seconds, 1),
        trials_redone=state["killed"] + state["restarted"],
        trials_failed=failed_trials(run.out),
        finished_twice=state["finished_twice"],
        rows=len(got),
        rows_lost=len(set(want) - set(got)),
        rows_differ=sum(1 for k in set(want) & set(got) if want[k] != got[k]),
        running_left=state["running"],
        selected_ok=state["selected"] == len(got),
        temp_left=len(temps),
    )


def fresh(workdir: Path, name: str, data: Path | None = None) -> Run:
    base = workdir / name
    return Run(base / "out", data or base / "data", base / "store", base / "cache")


def clean_run(workdir: Path, data: Path) -> Run:
    run = fresh(workdir, "clean", data)
    rc, _ = run.run("clean")
    if rc != 0:
        raise RuntimeError(f"the undisturbed sweep failed (rc {rc}):\n{run.log('clean')[-4000:]}")
    return run


def inject(fault: str, workdir: Path, clean: Run) -> Outcome:
    """Apply ``fault`` to a fresh run of the sweep, re-run, and assess."""
    shutil.rmtree(workdir / fault, ignore_errors=True)
    run = fresh(workdir, fault, None if fault == "generation" else clean.data)
    if fault in STAGES:
        hit = kill_at(run, fault)
        rc, seconds = run.run("rerun")
        return assess(fault, hit, rc, seconds, run, clean.out)
    if fault == "store":  # a sweep fills and verifies a store; bit rot (size, mtime kept); again
        before = Run(run.out.with_name("out-before"), run.data, run.store, run.cache)
        rc, _ = before.run("before")
        if rc != 0:
            raise RuntimeError(f"store fault: first sweep failed:\n{before.log('before')[-4000:]}")
        hit = _rot(run.store)
        rc, seconds = run.run("rerun")
        outcome = assess(fault, hit, rc, seconds, run, clean.out)
        set_aside = len(list(run.store.rglob("manifest.invalid-*.json")))
        outcome.notes.append(f"{set_aside} store entries set aside and recomputed")
        return outcome
    if fault == "rot-live":  # bit rot while trials read the store: healed within the same run
        proc = run.start("rerun")
        t0, hit = time.monotonic(), False
        while proc.poll() is None and not hit:
            try:
                hit = DETECT["search"](run) and _rot(run.store)
            except OSError:
                hit = False
            time.sleep(0.1)
        rc = proc.wait(timeout=900)
        outcome = assess(fault, hit, rc, time.monotonic() - t0, run, clean.out)
        set_aside = len(list(run.store.rglob("manifest.invalid-*.json")))
        outcome.notes.append(
            f"{set_aside} store entries set aside and recomputed in the same run; "
            f"{outcome.trials_redone} trials that read them reran"
        )
        return outcome
    if fault == "worker":  # trial workers die mid-search; the same sweep must finish
        proc = run.start("rerun")
        t0, killed = time.monotonic(), 0
        while proc.poll() is None and not killed:
            try:
                if DETECT["search"](run):
                    killed = _kill_trial_workers(proc.pid)
            except OSError:
                pass
            time.sleep(0.05)
        rc = proc.wait(timeout=900)
        outcome = assess(fault, killed > 0, rc, time.monotonic() - t0, run, clean.out)
        outcome.notes.append(f"{killed} trial worker processes killed")
        return outcome
    if fault == "twice":  # a second sweep on the same folder while the first runs
        first = run.start("first")
        while first.poll() is None and not (run.out / ".sweep.lock").exists():
            time.sleep(0.1)
        time.sleep(1.0)
        t0 = time.monotonic()
        rc2, _ = run.run("second")
        rc1 = first.wait(timeout=900)
        outcome = assess(fault, rc2 == 2, rc1, time.monotonic() - t0, run, clean.out)
        if rc2 != 2:
            outcome.notes.append(f"second sweep exit {rc2}, expected 2")
        return outcome
    raise ValueError(f"unknown fault {fault!r}; valid: {', '.join(FAULTS)}")


def _kill_trial_workers(pid: int) -> int:
    """SIGKILL the Tune trial actors below process ``pid`` (the sweep); how many."""
    import psutil

    killed = 0
    for child in psutil.Process(pid).children(recursive=True):
        try:
            if "ImplicitFunc" in " ".join(child.cmdline()) or "ImplicitFunc" in child.name():
                child.kill()
                killed += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return killed


def _rot(store: Path) -> bool:
    """Flip 4 KiB inside every ``tokens.npy`` of the store, size and mtime unchanged."""
    hit = False
    for path in store.rglob("tokens.npy"):
        st = os.stat(path)
        os.chmod(path, 0o644)
        with open(path, "r+b") as f:
            f.seek(max(128, st.st_size // 2))
            chunk = bytearray(f.read(4096))
            f.seek(max(128, st.st_size // 2))
            f.write(bytes(b ^ 0xFF for b in chunk))
        os.chmod(path, st.st_mode)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        hit = True
    return hit


def table(outcomes: list[Outcome]) -> str:
    head = ("fault", "hit", "exit", "recover s", "redone", "failed", "fin x2", "rows", "lost",
            "differ", "RUNNING", "selected", "temps")  # fmt: skip
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for o in outcomes:
        lines.append(" | ".join(str(v) for v in (
            o.fault, o.hit, o.rc, o.recover_s, o.trials_redone, o.trials_failed,
            o.finished_twice, o.rows, o.rows_lost, o.rows_differ, o.running_left, o.selected_ok,
            o.temp_left)))  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--faults", default=",".join(FAULTS))
    p.add_argument("--workdir", default=None)
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args(argv)
    faults = [f for f in args.faults.split(",") if f]
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="faults-"))
    t0 = time.monotonic()
    reuse = fresh(workdir, "clean", workdir / "data")
    if args.workdir and (reuse.out / "results.csv").exists():
        clean = reuse  # an earlier undisturbed run in the same work folder
    else:
        clean = clean_run(workdir, workdir / "data")
    print(f"undisturbed run: {time.monotonic() - t0:.0f} s, {len(results(clean.out))} rows; "
          f"reproducible mode: {'on' if reproducible_override() else 'not available'}")  # fmt: skip
    outcomes = []
    for fault in faults:
        outcome = inject(fault, workdir, clean)
        outcomes.append(outcome)
        print(json.dumps(asdict(outcome)), flush=True)
    print(table(outcomes))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"work folder: {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
