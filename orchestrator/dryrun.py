"""``--dry-run``: the plan, its price, and every check the real run makes before Ray.

A dry run that says OK for a run that will then be refused is what users submit to a cluster,
so this runs the same checks as the real run's start (:func:`orchestrator.validate.
check_environment` and the probe build of :func:`orchestrator.validate.validate_values`), but
collects every problem instead of stopping at the first, writes nothing but generated data, and
names what it could not check here (a remote dataset not fetched, resources of a cluster not
connected, a GPU not visible) instead of calling it OK. Probes are built at each encoder's width
and search corner with one forward pass at the smallest class count (the real run also runs the
largest, which for prototype heads at 527 classes costs seconds per corner).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Findings:
    """Problems (the run would be refused), what was checked and what could not be."""

    problems: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    def run(self, name: str, check: Callable[[], object]) -> None:
        """Run a check that raises ConfigError; record its message as a problem."""
        from orchestrator.config import ConfigError

        try:
            check()
        except ConfigError as err:
            self.problems.append(str(err))
        else:
            self.checked.append(name)


def _remote(source: str | None) -> bool:
    if not source or source == "generated":
        return False
    from orchestrator.datasets.api import normalize_source

    return "://" in source or "://" in (normalize_source(source) or "")


def _metadata(cfg, findings: Findings) -> None:
    """``orchestrator.data --check``'s metadata problems of every dataset that is here."""
    from orchestrator.datasets.checks import check_dataset, format_problems
    from orchestrator.validate import check_dataset_choice

    for ds in cfg.datasets:
        if _remote(ds.source) or _remote(cfg.data_root):
            findings.unchecked.append(
                f"dataset {ds.name}: metadata not checked (remote data "
                f"{ds.source or cfg.data_root!r} not fetched by a dry run; the run checks it "
                "after fetching)"
            )
            continue
        try:
            spec = check_dataset_choice(ds)
        except Exception as err:  # noqa: BLE001 - reported as a problem of this dataset
            findings.problems.append(f"dataset {ds.name}: {err}")
            continue
        problems = check_dataset(spec, cfg.data_root)
        if problems:
            findings.problems.append(
                format_problems(spec, problems) + f"\n(`python -m orchestrator.data {ds.name} "
                "--check` lists the same problems)"
            )
    findings.checked.append("datasets' metadata")


def _resources(cfg, findings: Findings) -> None:
    from orchestrator.validate import check_local_resources

    if cfg.ray.address not in ("", "local"):
        findings.unchecked.append(
            f"resources: checked against the cluster when the run connects to "
            f"ray.address={cfg.ray.address!r} (a dry run does not connect)"
        )
        return
    wanted = max(cfg.ray.gpus_per_trial, cfg.ray.gpus_per_extraction)
    findings.run("local resources", lambda: check_local_resources(cfg))
    if wanted > 0 and not findings.problems:
        findings.checked.append(f"{wanted:g} GPU(s) visible")


def collect(cfg) -> Findings:
    """Every check of the real run's start, each problem listed (nothing started)."""
    from orchestrator import preflight
    from orchestrator.validate import (
        check_checkpoint_files,
        check_checkpoints,
        check_sources,
        validate_values,
    )

    findings = Findings()
    findings.run(
        "probe values at every encoder width and search corner",
        lambda: validate_values(cfg, True, largest=False),
    )
    findings.problems += preflight.checkpoint_problems(cfg)
    findings.problems += preflight.probe_problems(cfg)
    if not findings.problems:
        findings.run("checkpoints", lambda: check_checkpoints(cfg))
        findings.run("local checkpoint files load", lambda: check_checkpoint_files(cfg))
    findings.run("dataset sources", lambda: check_sources(cfg))
    staged = preflight.dataset_problems(cfg)
    findings.problems += staged
    if not staged:
        _metadata(cfg, findings)
    _resources(cfg, findings)
    if cfg.out_dir.exists() and not cfg.out_dir.is_dir():
        findings.problems.append(f"--out {str(cfg.out_dir)!r} is a file, not a folder.")
    return findings


def dry_run(cfg, verbose: bool = False, gpus: float | None = None) -> int:
    """Print the plan, its price, the locations and every pre-flight check (exit 2 on problems)."""
    from orchestrator import preflight
    from orchestrator.cost import price
    from orchestrator.paths import locations
    from orchestrator.plan import make_plan

    plan = make_plan(cfg)
    print(plan.describe(cfg, verbose=verbose))
    print("locations:")
    print("\n".join(f"  {line}" for line in locations(cfg).lines()))
    print("\n".join(price(cfg, plan, gpus or 0.0).lines()))
    findings = collect(cfg)
    for line in findings.unchecked:
        print(f"pre-flight: NOT CHECKED: {line}")
    if findings.problems:
        print(preflight.report(findings.problems))
        return 2
    print(f"pre-flight: OK: {', '.join(findings.checked)}")
    return 0


def cpu_seconds() -> float:
    """CPU time of this process so far (the benchmark's load-independent dry-run cost)."""
    times = os.times()
    return times.user + times.system
