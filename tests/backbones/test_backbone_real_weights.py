"""The official checkpoints themselves: run only where ``<NAME>_CHECKPOINT`` points at a real
file (e.g. ``EAT_CHECKPOINT=~/ckpt/EAT-base_epoch30_pt.pt``); skipped with the reason otherwise.
Real files may need ``UNMUTE_TRUST_PICKLE=1`` (fairseq/argparse pickles)."""

from __future__ import annotations

import os

import pytest
import torch

from backbones import BACKBONES, create_backbone


@pytest.mark.real_weights
@pytest.mark.parametrize("name", BACKBONES.names())
def test_official_checkpoint_gives_the_paper_token_map(name: str) -> None:
    spec = BACKBONES.get(name).spec
    path = os.environ.get(spec.env_var)
    if not path:
        pytest.skip(f"set {spec.env_var} to the official {spec.checkpoint.file_name} "
                    f"({spec.checkpoint.page}) to test {name} with real weights")
    torch.manual_seed(0)
    trust = os.environ.get("UNMUTE_TRUST_PICKLE") == "1"
    bb = create_backbone(name, checkpoint=None, trust_pickle=trust)
    assert bb.weights_id.startswith("sha256:")
    t = torch.arange(160_000) / 16_000
    wave = (0.1 * torch.sin(2 * torch.pi * 1000 * t) + 0.01 * torch.randn(160_000)).unsqueeze(0)
    tm = bb.embed(wave, 16_000)
    assert tm.grid == spec.grid_10s and tm.tokens.shape[-1] == spec.embed_dim
    assert torch.isfinite(tm.tokens).all()
    assert (tm.cls is not None) == spec.has_cls
    # trained encoders give tokens that differ across time for a tone vs silence
    half = bb.embed(torch.cat([wave[:, :80_000], torch.zeros(1, 80_000)], 1), 16_000)
    assert not torch.allclose(tm.tokens, half.tokens, atol=1e-3)
