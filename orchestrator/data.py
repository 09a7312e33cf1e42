"""``python -m orchestrator.data NAME --prepare | --check``: stage and validate one dataset.

``--prepare`` downloads and extracts the official source into ``--data-root`` (needs a
network, or ``--source`` pointing at a local archive/folder); ``--check`` opens every split,
decodes every clip and prints counts, classes, label statistics and the unreadable files.
``--check`` first lists every metadata problem (missing columns, unknown splits and labels,
duplicate ids, missing files, label counts, class count, bad windows) with file and row.
Exit codes: 0 ok, 1 unreadable clips / empty splits / download failed, 2 unknown name or
metadata problems.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class SplitCheck:
    name: str
    n: int
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    label_counts: list[int] = field(default_factory=list)
    empty_labels: int = 0


def _options(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--option {pair!r}: write KEY=VALUE, e.g. --option max_clips=100")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = value
    return out


def check(
    spec: Any, data_root: str, decode: bool = True, progress: bool = True
) -> list[SplitCheck]:
    """Open every split of ``spec``; with ``decode``, read every clip and list failures."""
    from tqdm.auto import tqdm

    from orchestrator.datasets import AudioError, open_split

    out = []
    for name in spec.splits:
        split = open_split(spec, name, data_root)
        result = SplitCheck(
            name,
            len(split),
            label_counts=split.label_counts().tolist(),
            empty_labels=sum(1 for r in split.records if not r.labels),
        )
        if decode:
            for i in tqdm(
                range(len(split)),
                desc=f"check {spec.name}/{name}",
                unit="clip",
                disable=not progress,
            ):
                try:
                    split[i]
                except AudioError as err:
                    result.unreadable.append((split.records[i].id, str(err)))
        out.append(result)
    return out


def summary(spec: Any, classes: Sequence[str], checks: Sequence[SplitCheck]) -> str:
    lines = [
        spec.summary(),
        f"version {spec.version}; {len(classes)} classes: "
        + ", ".join(list(classes)[:12])
        + (" ..." if len(classes) > 12 else ""),
    ]
    lines.append(
        f"{'split':<8} {'clips':>8} {'no label':>9} {'min/cls':>8} {'max/cls':>8} "
        f"{'unreadable':>10}"
    )
    for c in checks:
        counts = c.label_counts or [0]
        lines.append(
            f"{c.name:<8} {c.n:>8} {c.empty_labels:>9} {min(counts):>8} "
            f"{max(counts):>8} {len(c.unreadable):>10}"
        )
    for c in checks:
        for clip, err in c.unreadable[:20]:
            lines.append(f"unreadable {c.name}: {clip}: {err}")
        if len(c.unreadable) > 20:
            lines.append(f"... and {len(c.unreadable) - 20} more in {c.name}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from orchestrator.datasets import DATASETS, DatasetError, get_dataset, open_split
    from orchestrator.datasets.prepare import prepare
    from probes.registry import RegistryError

    p = argparse.ArgumentParser(
        prog="python -m orchestrator.data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", help=f"dataset: {', '.join(DATASETS.names())}")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--prepare", action="store_true", help="download and stage the dataset")
    mode.add_argument("--check", action="store_true", help="validate a staged copy")
    p.add_argument("--data-root", default=os.environ.get("UNMUTE_DATA", "data"))
    p.add_argument(
        "--source",
        default=None,
        help="override the source: local archive/folder, s3:// prefix, hf://datasets/ID",
    )
    p.add_argument("--audio-dir", default=None, help="as20k: folder with the AudioSet clips")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-decode", action="store_true", help="--check without decoding audio")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        from orchestrator.datasets.folder import folder_spec, is_folder_ref

        if args.name not in DATASETS.names() and is_folder_ref(args.name):
            spec = folder_spec(args.name)  # a user's folder: data root not used
            spec = spec.with_options(**_options(args.option)) if args.option else spec
        else:
            spec = get_dataset(args.name, source=args.source, **_options(args.option))
        if args.prepare:
            path = prepare(
                spec, args.data_root, progress=not args.no_progress, audio_dir=args.audio_dir
            )
            print(f"{spec.name}: staged under {path}")
            return 0
        from orchestrator.datasets.checks import check_dataset, format_problems

        problems = check_dataset(spec, args.data_root)
        if problems:
            print(format_problems(spec, problems), file=sys.stderr)
            return 2
        checks = check(
            spec, args.data_root, decode=not args.no_decode, progress=not args.no_progress
        )
        classes = open_split(spec, "test", args.data_root).classes
        print(summary(spec, classes, checks))
        bad = any(c.unreadable or c.n == 0 for c in checks)
        return 1 if bad else 0
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except DatasetError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
