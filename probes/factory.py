"""The probe registry (paper names as keys) and :func:`create_probe`, the one way to build a head.

Entries are lazy ``"module:Class"`` strings, so ``PROBES.check(name)`` and ``PROBES.names()``
import no head module. ``create_probe`` validates hyperparameter names against the head's
constructor, so a typo in a sweep file fails with the valid names instead of deep in a trial.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

from probes.registry import Registry, did_you_mean

if TYPE_CHECKING:  # names and hyperparameters are listed without importing torch
    from probes.pooling import ProbeHead

logger = logging.getLogger(__name__)

PROBES: Registry[type[ProbeHead]] = Registry("probe")

for _name, _target in (
    ("linear", "probes.heads.vector:LinearProbe"),
    ("mlp", "probes.heads.vector:MLPProbe"),
    ("linearc", "probes.heads.vector:LinearCProbe"),
    ("conv", "probes.heads.grid:ConvProbe"),
    ("linpre", "probes.heads.grid:LinPreProbe"),
    ("mhca", "probes.heads.attention:MHCAProbe"),
    ("ep", "probes.heads.attention:EPProbe"),
    ("simpool", "probes.heads.attention:SimPoolProbe"),
    ("abmilp", "probes.heads.attention:ABMILPProbe"),
    ("proto", "probes.heads.prototype:ProtoProbe"),
    ("protobin", "probes.heads.prototype:ProtoBinProbe"),
):
    PROBES.register(_name, _target)


def probe_hparams(name: str) -> dict[str, Any]:
    """The constructor hyperparameters of probe ``name`` with their defaults."""
    cls = PROBES.get(name)
    params = inspect.signature(cls.__init__).parameters
    return {
        key: p.default
        for key, p in params.items()
        if key not in ("self", "embed_dim", "num_classes") and p.kind is p.POSITIONAL_OR_KEYWORD
    }


def create_probe(name: str, embed_dim: int, num_classes: int, **hparams: Any) -> ProbeHead:
    """Build probe ``name`` for ``embed_dim``-wide tokens and ``num_classes`` outputs."""
    cls = PROBES.get(name)
    valid = probe_hparams(name)
    for key in hparams:
        if key not in valid:
            choices = ", ".join(sorted(valid)) or "(none)"
            raise TypeError(
                f"probe {name!r} has no hyperparameter {key!r}.{did_you_mean(key, list(valid))} "
                f"Valid hyperparameters: {choices}."
            )
    probe = cls(embed_dim=embed_dim, num_classes=num_classes, **hparams)
    # What probes.checkpoint needs to rebuild this head: its registry name and constructor kwargs.
    probe.probe_name = name
    probe.init_kwargs = {"embed_dim": embed_dim, "num_classes": num_classes, **hparams}
    logger.debug("created probe %s (D=%d, C=%d, %s)", name, embed_dim, num_classes, hparams)
    return probe
