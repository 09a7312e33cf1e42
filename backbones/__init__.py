"""Encoders: the only place that loads encoder weights or turns audio into token maps.

``create_backbone(name, checkpoint=..., **overrides)`` returns a frozen :class:`Backbone` whose
``embed(waveform, sample_rate, lengths, layer)`` gives a :class:`TokenMap`; ``BACKBONES`` lists
the paper's nine encoders with their frozen :class:`EncoderSpec`. Names are imported on first
use (PEP 562), so listing ``BACKBONES`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BACKBONES": "backbones.zoo",
    "Backbone": "backbones.base",
    "CheckpointError": "backbones.checkpoints",
    "CheckpointSource": "backbones.spec",
    "EncoderSpec": "backbones.spec",
    "FrontendSpec": "backbones.spec",
    "TokenMap": "backbones.spec",
    "create_backbone": "backbones.factory",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'backbones' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
