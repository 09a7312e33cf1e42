"""Entry point: ``python -m orchestrator.sweep NAME [overrides] [--out DIR] [--dry-run]``.

Composes the sweep, validates it (exit code 2 on any bad name or value, before Ray starts),
plans it, extracts token maps, runs every study on Ray Tune, writes the results table and the
report, and logs it all to MLflow. Re-running the same command continues where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

log = logging.getLogger("orchestrator.sweep")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m orchestrator.sweep",
        description="Run a probing benchmark sweep (sweeps/<NAME>.yaml) end to end.",
    )
    p.add_argument("name", nargs="?", help="sweep name, e.g. quickstart or full_benchmark")
    p.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. probe=[linear,protobin] search.trials=4"
    )
    p.add_argument("--out", help="output folder (default outputs/<sweep name>)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan, its price and the pre-flight check; start no work",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="--dry-run: list every job; a run: also show Ray's and MLflow's start-up lines",
    )
    p.add_argument(
        "--gpus", type=float, default=None, help="--dry-run: price the wall time on N GPUs"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted sweep in its output folder (re-running does too)",
    )
    p.add_argument("--list", action="store_true", help="list encoders, datasets, probes and sweeps")
    p.add_argument(
        "--config-dir",
        help="a sweeps folder: with a base.yaml it replaces the packaged one, without it "
        "adds its sweeps and encoder/dataset/probe files to them (sets UNMUTE_SWEEPS)",
    )
    return p


def list_registered() -> str:
    from backbones import BACKBONES
    from orchestrator.config import list_sweeps
    from orchestrator.datasets import DATASETS
    from probes import PROBES

    lines = ["Encoders:"]
    for name in BACKBONES.names():
        lines.append(f"  {name}")
    lines.append("Datasets:")
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        lines.append(
            f"  {name:14s} {spec.task:10s} {spec.num_classes:>4} classes  "
            f"{spec.metric:8s} {spec.source}"
        )
    lines.append("Probes:")
    lines += [f"  {name}" for name in PROBES.names()]
    lines.append("Sweeps:")
    lines += [f"  {name}" for name in list_sweeps()]
    return "\n".join(lines)


def _init_ray(address: str) -> bool:
    """Connect to ``address`` or start a private local Ray; return True if we connected."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        return True
    # "local": never join a cluster that `ray start` left running on this machine
    for attempt in range(3):
        try:
            ray.init(
                address="local",
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
            )
            return True
        except Exception as err:  # Ray raises a bare Exception when its raylet starts slowly
            if "timed out during startup" not in str(err) or attempt == 2:
                raise
            log.warning("local Ray did not start in time (a loaded machine?); retrying")
            ray.shutdown()
    return True


def _log_locations(cfg) -> None:
    from orchestrator.paths import locations

    where = locations(cfg)
    if where.cluster:
        log.info("%s: locations resolve under the stable root (UNMUTE_HOME)", where.cluster)
    for line in where.lines():
        log.info("%s", line)
    for name in where.in_job_copy():
        log.warning(
            "%s lies inside this Ray job's working-dir copy: it vanishes with the job and a "
            "re-submission will not find it; set UNMUTE_HOME (or UNMUTE_OUT_ROOT / UNMUTE_DATA "
            "/ UNMUTE_STORE / UNMUTE_TUNE_STORAGE) to a stable path or s3://...",
            name,
        )


def _nodes_disagree(cfg) -> bool:
    """On a cluster, every node must see the sweep's local locations (orchestrator.nodecheck)."""
    from orchestrator import nodecheck
    from orchestrator.paths import cluster_reason

    if not cluster_reason(cfg.ray.address):
        return False
    problems = nodecheck.check_nodes(cfg)
    if problems:
        print(nodecheck.report(problems), file=sys.stderr)
    return bool(problems)


def _node_watch(cfg):
    """Logs nodes lost mid-sweep on a cluster (nothing to watch on a private local Ray)."""
    import contextlib

    from orchestrator import nodecheck
    from orchestrator.paths import cluster_reason

    return nodecheck.NodeWatch() if cluster_reason(cfg.ray.address) else contextlib.nullcontext()


def run(cfg, resume: bool = False) -> int:
    """Run a validated sweep holding its output folder's lock; return the process exit code."""
    from orchestrator import preflight
    from orchestrator.outlock import OutDirBusy, OutDirLock
    from orchestrator.outputs import output_sync

    _log_locations(cfg)
    try:
        lock = OutDirLock(cfg.out_dir).acquire()
    except OutDirBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        sync = output_sync(cfg)
        if sync is not None:
            sync.pull()  # a re-submitted job on another machine resumes from S3
        if resume and not (cfg.out_dir / "sweep.json").exists():
            log.error(
                "--resume: nothing to resume in %s (no sweep.json: this sweep never started "
                "there); run without --resume.",
                cfg.out_url or cfg.out_dir,
            )
            return 2
        from orchestrator import rerun

        done = rerun.verified(cfg)
        if done is not None:  # a finished sweep: verify only, no Ray, no MLflow
            _print_verified(cfg, done)
            return 0
        rerun.clear_finished(cfg.out_dir)
        problems = preflight.check(cfg, with_cluster=False)
        if problems:
            print(preflight.report(problems), file=sys.stderr)
            return 2
        import ray

        started_ray = _init_ray(cfg.ray.address)
        try:
            problems = preflight.resource_problems(preflight.demands(cfg), preflight.node_shapes())
            if problems:
                print(preflight.report(problems), file=sys.stderr)
                return 2
            if _nodes_disagree(cfg):
                return 2
            with preflight.InfeasibleWatch(), _node_watch(cfg):
                return _run_locked(cfg, sync)
        finally:
            if sync is not None:
                sync.push()
            if started_ray:
                ray.shutdown()
    finally:
        lock.release()


def _run_locked(cfg, sync) -> int:
    import polars as pl

    from orchestrator import skipped as skipped_clips
    from orchestrator.extract_jobs import run_extractions
    from orchestrator.plan import make_plan
    from orchestrator.report import write_report
    from orchestrator.reporting.merge import with_protocol
    from orchestrator.runner import run_studies
    from orchestrator.tracking import SweepTracker, make_sweep_id, ui_hint

    plan = make_plan(cfg)
    marker = cfg.out_dir / "sweep.json"
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    # the sweep id (tag on every MLflow run) is fixed when the sweep first starts here
    state = json.loads(marker.read_text()) if marker.exists() else {}
    if "sweep_id" not in state:
        state = {
            "sweep": cfg.name,
            "overrides": list(cfg.overrides),
            **state,
            "sweep_id": make_sweep_id(cfg.name, cfg.overrides, cfg.out_url or cfg.out_dir),
        }
        marker.write_text(json.dumps(state, indent=2) + "\n")
    started_at = time.monotonic()
    failed: list[str] = []
    artifacts = None
    if cfg.tracking_uri.startswith("sqlite:"):  # keep artifacts beside the local store
        artifacts = (cfg.out_dir / "mlartifacts").resolve().as_uri()
        _relocate_store(cfg)
    tracker = SweepTracker(
        cfg.tracking_uri,
        cfg.experiment,
        sweep_id=state["sweep_id"],
        sweep_name=cfg.name,
        out_dir=str(cfg.out_url or cfg.out_dir),
        config=dataclasses.asdict(cfg),
        artifact_location=artifacts,
    )
    tracker.close_stale()
    log.info(
        "MLflow: %s, experiment %r, sweep id %s",
        cfg.tracking_uri,
        cfg.experiment,
        state["sweep_id"],
    )
    log.info("extracting token maps (%d jobs)", len(plan.extractions))
    extracted = run_extractions(cfg)
    skipped = skipped_clips.collect_skipped(cfg.store_url, extracted)
    skipped_clips.write_skipped(cfg.out_dir, skipped)
    frames = []
    # The progress display is the driver's periodic "studies: N of M finished" line
    # (orchestrator/schedule_tune.py): one display, in the log's own order, never a bar
    # redrawn between log lines.
    for study, rows, error in run_studies(cfg, plan.studies, extracted, tracker):
        if error or rows.is_empty():
            failed.append(f"{study.study_id}: {error or 'no result rows'}")
        else:
            frames.append(rows)
        if sync is not None:
            sync.push()
    if not frames:
        log.error("no study finished; nothing to report. %d studies failed:", len(failed))
        for line in failed:
            log.error("  %s", line)
        tracker.close("FAILED")
        return 1
    results = pl.concat(frames, how="diagonal_relaxed")
    results = with_protocol(results, cfg.train.epochs, cfg.search.trials, cfg.seeds)
    results.write_csv(cfg.out_dir / "results.csv")
    results.write_parquet(cfg.out_dir / "results.parquet")
    expected = pl.DataFrame(
        [
            {"backbone": s.backbone, "dataset": s.dataset.name, "probe": s.probe.name}
            for s in plan.studies
        ]
    )
    paths = write_report(results, cfg.out_dir / "report", tie_rule=cfg.tie_rule, expected=expected)
    skipped_clips.append_to_report(paths.get("report"), skipped)
    tracker.log_sweep(
        metrics={
            "studies_finished": len(frames),
            "studies_failed": len(failed),
            "wall_seconds": time.monotonic() - started_at,
            **skipped_clips.metrics(skipped),
        },
        tags={"overrides": " ".join(cfg.overrides)},
    )
    tracker.log_artifacts(
        tracker.sweep_run_id,
        [cfg.out_dir / "results.csv", cfg.out_dir / skipped_clips.FILE, *paths.values()],
        "report",
    )
    tracker.log_report(
        {**paths, "results": cfg.out_dir / "results.csv"}, results
    )  # (#23) tables, images and mean ranks the UI shows
    tracker.close("FINISHED" if not failed else "FAILED")
    if not failed:
        from orchestrator.rerun import stamp_finished

        stamp_finished(cfg, results.height)
    hint = ui_hint(cfg.tracking_uri, tracker.experiment_id)
    hint += _relocate_line(cfg)
    _print_summary(cfg, paths, failed, time.monotonic() - started_at, hint)
    return 1 if failed else 0


def _store_in_folder(cfg) -> bool:
    """True when the MLflow store is the output folder's own sqlite file."""
    from orchestrator.relocate import DB

    return cfg.tracking_uri == f"sqlite:///{(cfg.out_dir / DB).resolve()}"


def _relocate_store(cfg) -> None:
    """(#23) A resumed sweep in a moved output folder: its store's artifact URIs follow it."""
    from orchestrator.relocate import DB, relocate

    if _store_in_folder(cfg) and (cfg.out_dir / DB).exists():
        relocate(cfg.out_dir)


def _relocate_line(cfg) -> str:
    """(#23) The final lines name ``orchestrator.relocate`` when the store is in the folder."""
    from orchestrator.relocate import relocate_hint

    return "\n" + relocate_hint(cfg.out_dir) if _store_in_folder(cfg) else ""


def dry_run(cfg, verbose: bool = False, gpus: float | None = None) -> int:
    """Print the plan, its price and every pre-flight check (exit 2): see orchestrator.dryrun."""
    from orchestrator.dryrun import dry_run as _dry_run

    return _dry_run(cfg, verbose=verbose, gpus=gpus)


def _print_summary(
    cfg, paths: dict[str, Path], failed: list[str], seconds: float, hint: str
) -> None:
    """The report's path (its text is in the file, not on the terminal); the last line's time is
    the command's wall time (from process start, Ray and MLflow start-up included)."""
    report_md = paths.get("report.md") or paths.get("report")
    if failed:
        print(f"\n{len(failed)} studies failed (missing cells in the report):")
        for line in failed:
            print(f"  {line}")
    print(f"Results: {cfg.out_dir / 'results.csv'}")
    if report_md:
        print(f"Report:  {report_md}")
    print(hint)
    print(f"finished in {max(seconds, command_seconds()):.0f} s (wall time of this command)")


def _print_verified(cfg, line: str) -> None:
    print(line)
    print(f"Results: {cfg.out_dir / 'results.csv'}")
    print(f"Report:  {cfg.out_dir / 'report' / 'report.md'}")
    print(f"finished in {command_seconds():.0f} s (wall time of this command)")


def command_seconds() -> float:
    """Seconds since this process started (Linux /proc; 0 where it cannot be read)."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from orchestrator.console import quiet_libraries

    quiet_libraries(args.verbose)
    from orchestrator.config import ConfigError, list_sweeps, load, sweeps_dir

    if args.config_dir:  # through the environment, so Ray workers started here see it too
        os.environ["UNMUTE_SWEEPS"] = str(Path(args.config_dir).expanduser().resolve())
        try:
            sweeps_dir()
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    if args.list:
        print(list_registered())
        return 0
    if not args.name:
        print(f"error: give a sweep name ({', '.join(list_sweeps())}) or --list", file=sys.stderr)
        return 2
    try:
        cfg = load(args.name, args.overrides, out_dir=args.out, build_probes=not args.dry_run)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        return dry_run(cfg, verbose=args.verbose, gpus=args.gpus)
    from orchestrator.validate import check_environment

    try:
        check_environment(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return run(cfg, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
