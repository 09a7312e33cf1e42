"""Encoders: the only place that loads encoder weights or turns audio into token maps.

``create_backbone(name, checkpoint=..., **overrides)`` returns a frozen :class:`Backbone` whose
``embed(waveform, sample_rate, lengths, layer)`` gives a :class:`TokenMap`; ``BACKBONES`` lists
the paper's nine encoders with their frozen :class:`EncoderSpec`.
"""

from __future__ import annotations

from backbones.base import Backbone
from backbones.checkpoints import CheckpointError
from backbones.factory import create_backbone
from backbones.spec import CheckpointSource, EncoderSpec, FrontendSpec, TokenMap
from backbones.zoo import BACKBONES

__all__ = [
    "BACKBONES", "Backbone", "CheckpointError", "CheckpointSource", "EncoderSpec",
    "FrontendSpec", "TokenMap", "create_backbone",
]
