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
    p.add_argument("--verbose", action="store_true", help="--dry-run: list every job")
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


def _warn_local_paths(cfg) -> None:
    """On a cluster, workers on other nodes cannot see the driver's local folders."""
    local = {
        "UNMUTE_STORE (store_url)": cfg.store_url,
        "UNMUTE_DATA (data_root)": cfg.data_root,
    }
    for name, location in local.items():
        if "://" not in location:
            log.warning(
                "connected to a Ray cluster but %s is the local path %s: trials and extraction "
                "on other nodes cannot read it; set %s to s3://... (or a shared filesystem)",
                name.split()[1],
                location,
                name.split()[0],
            )


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
            with preflight.InfeasibleWatch():
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
    from tqdm import tqdm

    from orchestrator import skipped as skipped_clips
    from orchestrator.extract_jobs import run_extractions
    from orchestrator.plan import make_plan
    from orchestrator.report import write_report
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
    if cfg.ray.address not in ("", "local"):  # "local": a private Ray on this machine
        _warn_local_paths(cfg)
    failed: list[str] = []
    artifacts = None
    if cfg.tracking_uri.startswith("sqlite:"):  # keep artifacts beside the local store
        artifacts = (cfg.out_dir / "mlartifacts").resolve().as_uri()
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
    progress = tqdm(total=len(plan.studies), desc="studies", unit="study")
    for study, rows, error in run_studies(cfg, plan.studies, extracted, tracker):
        progress.update()
        if error or rows.is_empty():
            failed.append(f"{study.study_id}: {error or 'no result rows'}")
        else:
            frames.append(rows)
        if sync is not None:
            sync.push()
    progress.close()
    if not frames:
        log.error("no study finished; nothing to report. %d studies failed:", len(failed))
        for line in failed:
            log.error("  %s", line)
        tracker.close("FAILED")
        return 1
    results = pl.concat(frames, how="diagonal_relaxed")
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
    tracker.close("FINISHED" if not failed else "FAILED")
    hint = ui_hint(cfg.tracking_uri, tracker.experiment_id)
    _print_summary(cfg, paths, failed, time.monotonic() - started_at, hint)
    return 1 if failed else 0


def dry_run(cfg, verbose: bool = False, gpus: float | None = None) -> int:
    """Print the plan, its price, the locations and the pre-flight check (exit 2 on problems)."""
    from orchestrator import preflight
    from orchestrator.cost import price
    from orchestrator.paths import locations
    from orchestrator.plan import make_plan

    plan = make_plan(cfg)
    print(plan.describe(cfg, verbose=verbose))
    print("locations:")
    print("\n".join(f"  {line}" for line in locations(cfg).lines()))
    print("\n".join(price(cfg, plan, gpus or 0.0).lines()))
    problems = preflight.check(cfg, with_cluster=False)
    if problems:
        print(preflight.report(problems))
        return 2
    print("pre-flight: checkpoints and datasets OK (resources are checked when Ray starts)")
    return 0


def _print_summary(
    cfg, paths: dict[str, Path], failed: list[str], seconds: float, hint: str
) -> None:
    report_md = paths.get("report.md") or paths.get("report")
    if report_md and Path(report_md).exists():
        print(Path(report_md).read_text())
    if failed:
        print(f"\n{len(failed)} studies failed (missing cells in the report):")
        for line in failed:
            print(f"  {line}")
    print(
        f"\nfinished in {seconds:.0f} s. Results: {cfg.out_dir / 'results.csv'}; "
        f"report: {cfg.out_dir / 'report'}"
    )
    print(hint)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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
