"""Entry point: ``python -m orchestrator.sweep NAME [overrides] [--out DIR] [--dry-run]``.

Composes the sweep, validates it (exit code 2 on any bad name or value, before Ray starts),
plans it, extracts token maps, runs every study on Ray Tune, writes the results table and the
report, and logs it all to MLflow. Re-running the same command continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
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
    p.add_argument("--dry-run", action="store_true", help="print the plan; start no Ray")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted sweep in its output folder (re-running does too)",
    )
    p.add_argument("--list", action="store_true", help="list encoders, datasets, probes and sweeps")
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
    """Connect to ``address`` or start a local Ray; return True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        return True
    # "local": a private Ray, never a cluster someone started with `ray start` on this machine
    for attempt in range(3):  # Ray gives its raylet 30 s to start; a loaded machine needs more
        try:
            ray.init(
                address="local", include_dashboard=False, log_to_driver=False,
                configure_logging=False,
            )
            return True
        except Exception as err:  # Ray raises a bare Exception when its node start times out
            if "timed out during startup" not in str(err) or attempt == 2:
                raise
            log.warning("Ray's local node did not start in time; retrying (%s)", err)
            ray.shutdown()
    return True


def sweep_id(cfg) -> str:
    """A sweep's identity in MLflow: its name, overrides and output folder (stable on re-runs)."""
    import hashlib

    payload = json.dumps([cfg.name, list(cfg.overrides), str(cfg.out_dir)])
    return hashlib.sha1(payload.encode()).hexdigest()[:12]


def run(cfg, resume: bool = False) -> int:
    """Run a validated sweep; return the process exit code."""
    import polars as pl
    import ray
    from tqdm import tqdm

    from orchestrator.plan import make_plan
    from orchestrator.provenance import provenance_tags
    from orchestrator.report import write_report
    from orchestrator.runner import run_extractions, run_studies
    from orchestrator.schedule_tracker import sweep_tracker

    plan = make_plan(cfg)
    marker = cfg.out_dir / "sweep.json"
    if resume and not marker.exists():
        log.error(
            "--resume: nothing to resume in %s (no sweep.json: this sweep never started there); "
            "run without --resume.",
            cfg.out_dir,
        )
        return 2
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        marker.write_text(
            json.dumps({"sweep": cfg.name, "overrides": list(cfg.overrides)}, indent=2) + "\n"
        )
    started_at = time.monotonic()
    started_ray = _init_ray(cfg.ray.address)
    if cfg.ray.address:
        _warn_local_paths(cfg)
    failed: list[str] = []
    try:
        artifacts = None
        if cfg.tracking_uri.startswith("sqlite:"):  # keep artifacts beside the local store
            artifacts = (cfg.out_dir / "mlartifacts").resolve().as_uri()
        tracker = sweep_tracker(
            cfg.tracking_uri,
            cfg.experiment,
            sweep_id=sweep_id(cfg),
            sweep_name=cfg.name,
            out_dir=str(cfg.out_dir),
            config={"overrides": " ".join(cfg.overrides), **provenance_tags()},
            artifact_location=artifacts,
        )
        stale = tracker.close_stale()
        if stale:
            log.info("MLflow: %d runs a stopped sweep left running closed as KILLED", stale)
        log.info("MLflow: %s, experiment %r", cfg.tracking_uri, cfg.experiment)
        log.info("extracting token maps (%d jobs)", len(plan.extractions))
        extracted = run_extractions(cfg)
        frames = []
        progress = tqdm(total=len(plan.studies), desc="studies", unit="study")
        for study, rows, error in run_studies(cfg, plan.studies, extracted, tracker):
            progress.update()
            if error or rows.is_empty():
                failed.append(f"{study.study_id}: {error or 'no result rows'}")
            else:
                frames.append(rows)
        progress.close()
        if not frames:
            log.error("no study finished; nothing to report")
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
        paths = write_report(
            results, cfg.out_dir / "report", tie_rule=cfg.tie_rule, expected=expected
        )
        sweep_run = tracker.sweep_run_id
        if hasattr(tracker, "log"):
            tracker.log(
                sweep_run,
                metrics={
                    "studies_finished": len(frames),
                    "studies_failed": len(failed),
                    "wall_seconds": time.monotonic() - started_at,
                },
            )
        tracker.log_artifacts(sweep_run, [cfg.out_dir / "results.csv", *paths.values()], "report")
        tracker.close("FINISHED" if not failed else "FAILED")
        _print_summary(cfg, paths, failed, time.monotonic() - started_at)
        return 1 if failed else 0
    finally:
        if started_ray:
            ray.shutdown()


def _print_summary(cfg, paths: dict[str, Path], failed: list[str], seconds: float) -> None:
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
    print(f"MLflow UI: mlflow ui --backend-store-uri {cfg.tracking_uri}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from orchestrator.config import ConfigError, list_sweeps, load

    if args.list:
        print(list_registered())
        return 0
    if not args.name:
        print(f"error: give a sweep name ({', '.join(list_sweeps())}) or --list", file=sys.stderr)
        return 2
    try:
        cfg = load(args.name, args.overrides, out_dir=args.out)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        from orchestrator.plan import make_plan

        print(make_plan(cfg).describe(cfg))
        return 0
    return run(cfg, resume=args.resume)


if __name__ == "__main__":
    sys.exit(main())
