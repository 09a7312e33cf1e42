"""Encoders from outside the package, selectable like the built-in ones.

``encoder=`` accepts, besides the names of :data:`backbones.zoo.BACKBONES`:

- ``path/to/file.py:Name``: a class or factory in a user's file (a relative path is taken from
  the current folder; under ``ray job submit`` that is the job's working dir on every node);
- ``package.module:Name``: a class or factory in an importable module;
- ``hf:<model id>[@revision]``: a Hugging Face ``transformers`` audio model (``backbones.hf``);
- ``hear:package.module``: a module implementing the HEAR 2021 API (``backbones.hear``);
- a name registered with :func:`register_encoder` or by an installed plugin's entry point in the
  group ``unmute_bench.encoders`` (``name = "package.module:Name"``).

Each resolves to an object implementing :class:`backbones.contract.Encoder`, wrapped into a
:class:`backbones.contract.UserBackbone`. Building the target is the user's code: it runs on the
driver (names, widths, the checker) and on the extraction workers.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from probes.registry import Registry

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "unmute_bench.encoders"
USER_ENCODERS: Registry[Any] = Registry("user encoder")
FORMS = (
    "path/to/file.py:Name, package.module:Name, hf:<model id>[@revision], "
    "hear:package.module, or a name registered with backbones.user.register_encoder"
)


class UserEncoderError(ValueError):
    """A user encoder reference that cannot be resolved; the message names the fix."""


def register_encoder(name: str) -> Callable[[Any], Any]:
    """Decorator: make a class or factory selectable as ``encoder=<name>``."""
    return USER_ENCODERS.register(name)  # type: ignore[return-value]


def _entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


# display name -> reference, for names the driver resolved (results label encoders by name)
ALIASES: dict[str, str] = {}


def is_user_ref(name: str) -> bool:
    """True if ``name`` selects an encoder from outside the package (no import done)."""
    return ":" in name or name in USER_ENCODERS or name in ALIASES or name in _entry_points()


def display_name(ref: str) -> str:
    """The name ``ref`` appears under in results (its ``name`` attribute, else its label);
    imports the user's module but builds no model. Remembered as an alias of ``ref``."""
    target, label = resolve_target(ref)
    name = getattr(target, "name", None)
    name = name if isinstance(name, str) and name else label
    ALIASES[name] = ref
    return name


def _load_file(path_text: str, ref: str) -> Any:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise UserEncoderError(
            f"encoder {ref!r}: no file {str(path)!r} (from {str(Path.cwd())!r} on this node). "
            f"Give a path to an existing .py file; on a Ray cluster submit with "
            f"'ray job submit --working-dir DIR' where DIR holds the file and use a path "
            f"relative to DIR, so Ray copies it to every node."
        )
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:10]
    mod_name = f"unmute_user_{path.stem}_{digest}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise UserEncoderError(f"encoder {ref!r}: cannot import {str(path)!r} as Python.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        del sys.modules[mod_name]
        raise
    return module


def _attr(module: Any, attr: str, ref: str) -> Any:
    if not hasattr(module, attr):
        names = sorted(
            n
            for n, v in vars(module).items()
            if not n.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))
        )
        from probes.registry import did_you_mean

        raise UserEncoderError(
            f"encoder {ref!r}: {module.__name__!r} has no {attr!r}.{did_you_mean(attr, names)} "
            f"Classes and functions there: {', '.join(names) or 'none'}."
        )
    return getattr(module, attr)


def resolve_target(ref: str) -> tuple[Callable[..., Any], str]:
    """The class/factory ``ref`` names and its default label (no model built)."""
    if ref in ALIASES and ALIASES[ref] != ref:
        return resolve_target(ALIASES[ref])
    if ref in USER_ENCODERS:
        return USER_ENCODERS.get(ref), ref
    eps = _entry_points()
    if ref in eps:
        return eps[ref].load(), ref
    if ref.startswith("hf:"):
        from backbones.hf import load_hf

        return (lambda: load_hf(ref[3:])), ref[3:].split("@")[0].rstrip("/").split("/")[-1]
    if ref.startswith("hear:"):
        from backbones.hear import load_hear

        return (lambda: load_hear(ref[5:])), ref[5:].split(".")[-1]
    where, sep, attr = ref.rpartition(":")
    if not sep or not where or not attr:
        raise UserEncoderError(f"encoder {ref!r} is not a reference; valid forms: {FORMS}.")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _load_file(where, ref)
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as err:
            raise UserEncoderError(
                f"encoder {ref!r}: cannot import {where!r} ({err}). Install the package on "
                f"every node (pip install / Ray runtime_env pip), or give a file: "
                f"path/to/file.py:{attr}."
            ) from None
    return _attr(module, attr, ref), attr


def build_user_encoder(ref: str, checkpoint: str | None = None) -> tuple[Any, str]:
    """Build the user's encoder object and its label (``name`` attribute or the default)."""
    target, label = resolve_target(ref)
    kwargs: dict[str, Any] = {}
    if checkpoint not in (None, "random"):
        try:
            takes = "checkpoint" in inspect.signature(target).parameters
        except (TypeError, ValueError):
            takes = False
        if not takes:
            raise UserEncoderError(
                f"encoder {ref!r}: checkpoint={checkpoint!r} given but {label} takes no "
                f"'checkpoint' argument; add one to it, or drop the checkpoint."
            )
        kwargs["checkpoint"] = checkpoint
    obj = target(**kwargs) if callable(target) and not _is_encoder(target) else target
    name = str(getattr(obj, "name", None) or label)
    return obj, name


def _is_encoder(obj: Any) -> bool:
    return not inspect.isclass(obj) and callable(getattr(obj, "embed", None))


def create_user_backbone(ref: str, checkpoint: str | None = None, **overrides: object) -> Any:
    """The frozen :class:`UserBackbone` of ``ref`` (overrides are not supported)."""
    from backbones.contract import UserBackbone

    if overrides:
        raise UserEncoderError(
            f"encoder {ref!r}: overrides {sorted(overrides)} apply to built-in encoders only; "
            f"configure your encoder in its own code."
        )
    obj, name = build_user_encoder(ref, checkpoint)
    return UserBackbone(obj, name, ref)


_SPECS: dict[str, Any] = {}


def user_entry(ref: str) -> Any:
    """A :class:`backbones.zoo.ZooEntry` for ``ref`` (the model is built once per process)."""
    from backbones.zoo import ZooEntry

    if ref not in _SPECS:
        import dataclasses

        import torch

        backbone = create_user_backbone(ref)
        rate = backbone.spec.sample_rate
        grid = backbone.embed(torch.zeros(1, rate), rate).grid  # 1 s: the cost model's tokens
        spec = dataclasses.replace(backbone.spec, grid_10s=(max(1, grid[0] * 10), grid[1]))
        _SPECS[ref] = ZooEntry(spec=spec, family="user", layouts=())
    return _SPECS[ref]
