"""A tiny stand-in encoder with the contract's backbone interface, for extraction tests.

It frames the waveform into 0.1 s hops (T frames) and projects each frame to F=2 tokens of
D=8 with a fixed random matrix, so tokens depend on the audio, shorter clips get padding
tokens, and everything runs in microseconds. Importable as
``tests.orchestrator.test_extract_fakes`` (also from a killed subprocess).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

HOP = 1600
F = 2
D = 8


@dataclass(frozen=True)
class FakeSpec:
    name: str = "fake"
    sample_rate: int = 16000
    embed_dim: int = D
    has_cls: bool = True


@dataclass(frozen=True)
class FakeTokenMap:
    tokens: torch.Tensor
    cls: torch.Tensor | None
    padding_mask: torch.Tensor
    grid: tuple[int, int]


class FakeBackbone(nn.Module):
    def __init__(self, has_cls: bool = True, delay: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = nn.Parameter(torch.randn(HOP, F * D, generator=g) / HOP**0.5, False)
        self.spec = FakeSpec(has_cls=has_cls)
        self.weights_id = f"random-fake-seed{seed}"
        self.frontend_id = "fake-hop1600"
        self.delay = delay
        self.calls = 0
        self.eval()

    @torch.no_grad()
    def embed(
        self,
        waveform: torch.Tensor,
        sample_rate: int,
        lengths: torch.Tensor | None = None,
        layer: int = -1,
    ) -> FakeTokenMap:
        assert sample_rate == self.spec.sample_rate, sample_rate
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        b, s = waveform.shape
        t = max(1, s // HOP)
        frames = waveform[:, : t * HOP].reshape(b, t, HOP)
        tokens = (frames @ self.proj).reshape(b, t * F, D)
        if lengths is None:
            lengths = torch.full((b,), s, dtype=torch.long)
        valid_t = torch.clamp((lengths + HOP - 1) // HOP, 1, t)
        mask = (torch.arange(t)[None, :] >= valid_t[:, None]).repeat_interleave(F, dim=1)
        keep = (~mask).unsqueeze(-1).float()
        cls = (tokens * keep).sum(1) / keep.sum(1) if self.spec.has_cls else None
        return FakeTokenMap(tokens=tokens, cls=cls, padding_mask=mask, grid=(t, F))


def test_fake_backbone_matches_contract_shapes() -> None:
    bb = FakeBackbone()
    wave = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 16000)).astype("f4"))
    tm = bb.embed(wave, 16000, lengths=torch.tensor([16000, 4000]))
    assert tm.tokens.shape == (2, 20, D) and tm.grid == (10, 2)
    assert tm.padding_mask[0].sum() == 0 and tm.padding_mask[1].sum() == 20 - 3 * F
    assert tm.cls is not None and tm.cls.shape == (2, D)
