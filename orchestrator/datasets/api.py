"""``get_dataset`` and ``open_split``: from a registry name to a lazy sequence of examples.

Where the data comes from is decided once, here: the generated defaults are built on first
use; a ``source`` override (local folder, ``s3://`` prefix) is read in place; an official
source (an archive URL, a Hugging Face id) is read from its staged copy under
``data_root/<name>/`` made by ``python -m orchestrator.data NAME --prepare``. A folder with the
canonical ``metadata.csv`` is read by the local-folder reader; any other folder by the reader of
the dataset's native layout (``spec.fmt``). Validation carving, CI caps and BirdSet's mixup
variants are applied on top, the same for every source.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from typing import Any

from orchestrator.datasets.catalog import DATASETS, VALID_FRACTION
from orchestrator.datasets.local import find_metadata, read_local
from orchestrator.datasets.spec import DatasetError, DatasetSpec
from orchestrator.datasets.splits import Record, Split, cap, carve
from orchestrator.datasets.synth import ensure_generated
from probes.registry import did_you_mean

log = logging.getLogger(__name__)

# Reader of each native layout: module with ``read(spec, root) -> (records by split, classes)``.
NATIVE_READERS = {
    "esc50": "orchestrator.datasets.official",
    "sc2": "orchestrator.datasets.official",
    "fsd50k": "orchestrator.datasets.official",
    "audioset": "orchestrator.datasets.official",
    "hf": "orchestrator.datasets.hf",
    "birdset": "orchestrator.datasets.birdset",
}


def get_dataset(name: str, source: str | None = None, **options: Any) -> DatasetSpec:
    """The registered spec of ``name``, with a source override and options baked in.

    Options: ``max_clips`` (cap per split, seeded), ``seed`` (carving / generation seed), and
    per-dataset ones (synthetic: ``train_clips``, ``valid_clips``, ``test_clips``,
    ``clip_seconds``, ``sample_rate``, ``max_events``; BirdSet: ``shots``, ``valid_shots``,
    ``mixup_p``). Any option changes ``spec.version`` and so the store key.
    """
    if name not in DATASETS.names() and (source or name in DATASETS):
        from orchestrator.datasets.folder import ALIASES, folder_spec

        spec = folder_spec(source or ALIASES[name], name)  # a user's folder (folder.py)
        return spec.with_options(**options) if options else spec
    spec = DATASETS.get(name)
    source = normalize_source(source)
    if source in (None, "", spec.source) and not options:
        return spec
    out = spec.with_options(source=source or None, **options)
    if out.synthetic:
        o = out.opts
        from dataclasses import replace

        out = replace(out, clip_seconds=float(o["clip_seconds"]), sample_rate=int(o["sample_rate"]))
    return out


def normalize_source(source: str | None) -> str | None:
    """A bare Hugging Face id (``owner/name``, not an existing path) -> ``hf://datasets/...``."""
    if (
        source
        and re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source)
        and not os.path.exists(source)
    ):
        return f"hf://datasets/{source}"
    return source


def is_remote_source(source: str) -> bool:
    """True for sources that must be staged first (archives, Hugging Face ids)."""
    return (
        source.startswith(("http://", "https://", "hf://"))
        or source == "generated"
        or os.path.isfile(source)
    )


def _exists(location: str) -> bool:
    """``os.path.exists`` for paths and fsspec URLs (``s3://...``) alike."""
    if "://" not in location:
        return os.path.exists(location)
    import fsspec

    fs, path = fsspec.core.url_to_fs(location)
    return fs.exists(path)


def join(root: str | os.PathLike, *parts: str) -> str:
    """``os.path.join`` that keeps ``s3://`` URLs intact."""
    root = os.fspath(root)
    if "://" in root:
        return "/".join([root.rstrip("/"), *parts])
    return os.path.join(root, *parts)


def generated_root(data_root: str | os.PathLike) -> str:
    """Where generated data is written: ``data_root``, or a node-local folder when it is a URL
    (generation is seeded, so every node makes the same clips)."""
    data_root = os.fspath(data_root)
    if "://" not in data_root:
        return data_root
    base = os.environ.get("UNMUTE_NODE_CACHE") or os.path.expanduser("~/.cache/unmute-bench")
    return os.path.join(base, "generated-data")


def staged_root(spec: DatasetSpec, data_root: str | os.PathLike) -> str:
    """The folder (path or URL) the dataset is read from; raises if it is not there.

    A generated dataset counts as present (it is generated on first use)."""
    if spec.synthetic and spec.source == "generated":
        return join(generated_root(data_root), spec.folder_name)
    if not is_remote_source(spec.source):
        if not _exists(spec.source):
            raise DatasetError(
                f"dataset {spec.name!r}: its source {spec.source} does not exist; fix `source:` "
                f"in sweeps/dataset/{spec.name}.yaml (a local folder or an s3:// prefix)."
            )
        return spec.source
    staged = join(data_root, spec.folder_name)
    if not _exists(join(staged, ".staged")):
        raise DatasetError(
            f"dataset {spec.name!r} is not staged under {staged}. Stage it with "
            f"`python -m orchestrator.data {spec.name} --prepare --data-root {data_root}` "
            f"(downloads {spec.source}), or point `source:` in sweeps/dataset/{spec.name}.yaml "
            "at a local folder or s3:// prefix that holds it."
        )
    return staged


def dataset_root(spec: DatasetSpec, data_root: str | os.PathLike) -> str:
    """The folder (path or fsspec URL) the split is read from; generates synthetic data."""
    if spec.synthetic and spec.source == "generated":
        return str(ensure_generated(spec, generated_root(data_root)))
    return staged_root(spec, data_root)


def read_records(spec: DatasetSpec, root: str) -> tuple[dict[str, list[Record]], tuple[str, ...]]:
    """All records of the source at ``root``, by split name, plus the class vocabulary."""
    if find_metadata(root) is not None:
        return read_local(spec, root)
    if spec.fmt not in NATIVE_READERS:
        raise DatasetError(
            f"{root}: no metadata.csv/metadata.parquet, and dataset {spec.name!r} has no native "
            f"reader (fmt={spec.fmt!r}). Write a metadata table (see orchestrator/datasets/local.py)."
        )
    module = importlib.import_module(NATIVE_READERS[spec.fmt])
    return module.read(spec, root)


def resolve_splits(spec: DatasetSpec, by_split: dict[str, list[Record]]) -> dict[str, list[Record]]:
    """Carve ``valid`` from ``train`` where the source has none; apply ``max_clips``."""
    out = dict(by_split)
    unknown = sorted(set(out) - set(spec.all_splits))
    if unknown:
        raise DatasetError(
            f"{spec.name}: split(s) {unknown} are not among {list(spec.all_splits)}; rename them "
            "in the metadata table (validation/val/dev -> valid, eval -> test are understood)."
        )
    seed = int(spec.opts.get("seed", 0))
    if "valid" not in out and "train" in out:
        out["train"], out["valid"] = carve(out["train"], VALID_FRACTION, seed)
        log.info(
            "%s: carved valid (%d) from train (%d left)",
            spec.name,
            len(out["valid"]),
            len(out["train"]),
        )
    limit = spec.opts.get("max_clips")
    if limit:
        out = {k: cap(v, int(limit), seed) for k, v in out.items()}
    return out


def open_split(spec: DatasetSpec | str, split: str, data_root: str | os.PathLike = "data") -> Split:
    """A lazy sequence of :class:`Example` for ``split`` of ``spec`` (a spec or a name)."""
    if isinstance(spec, str):
        spec = get_dataset(spec)
    if split not in spec.all_splits:
        raise DatasetError(
            f"dataset {spec.name!r} has no split {split!r}.{did_you_mean(split, spec.all_splits)} "
            f"Valid splits: {', '.join(spec.all_splits)}."
        )
    root = dataset_root(spec, data_root)
    by_split, classes = read_records(spec, root)
    by_split = resolve_splits(spec, by_split)
    transform = None
    base = split
    if split in spec.extra_splits:
        from orchestrator.datasets.birdset import mixup_transform

        base = "train"
        transform = mixup_transform(spec, by_split["train"], split)
    if base not in by_split:
        raise DatasetError(
            f"{root}: dataset {spec.name!r} has no records for split {base!r} "
            f"(found: {', '.join(sorted(by_split)) or 'none'})."
        )
    return Split(spec, split, by_split[base], classes=classes, transform=transform)
