"""Every registered encoder (tiny, random init): the TokenMap contract, clip-length policy,
frozenness and determinism. Generated from the registry: a new encoder is tested for free."""

from __future__ import annotations

import pytest
import torch

from backbones import BACKBONES, Backbone, EncoderSpec, TokenMap, create_backbone
from probes.registry import RegistryError

NAMES = BACKBONES.names()
PAPER_NAMES = {"audiomae", "asit", "beats", "dasheng", "eat", "sslam",
               "beats_plus", "eat_plus", "sslam_plus"}


def tiny(name: str, **kw: object) -> Backbone:
    return create_backbone(name, checkpoint="random", size="tiny", **kw)


def test_all_nine_paper_encoders_are_registered() -> None:
    assert set(NAMES) == PAPER_NAMES


def test_unknown_encoder_gets_did_you_mean() -> None:
    with pytest.raises(RegistryError, match="Did you mean 'beats'"):
        create_backbone("beat", checkpoint="random")


def test_unknown_override_is_refused() -> None:
    with pytest.raises(TypeError, match="valid: size"):
        create_backbone("eat", checkpoint="random", sise="tiny")


@pytest.mark.parametrize("name", NAMES)
def test_spec_is_complete_and_frozen(name: str) -> None:
    spec = BACKBONES.get(name).spec
    assert isinstance(spec, EncoderSpec) and spec.name == name
    assert spec.embed_dim == 768 and spec.sample_rate == 16_000
    assert spec.paper and spec.licence and spec.checkpoint.page and spec.checkpoint.file_name
    assert spec.has_cls == (spec.family in ("vit", "eat"))
    with pytest.raises(AttributeError):
        spec.embed_dim = 1  # type: ignore[misc]


@pytest.mark.parametrize("name", NAMES)
def test_token_map_of_10s_and_1s_clips(name: str, clips: torch.Tensor) -> None:
    bb = tiny(name)
    spec = bb.spec
    tm = bb.embed(clips, 16_000, lengths=torch.tensor([160_000, 16_000]))
    assert isinstance(tm, TokenMap)
    t, f = tm.grid
    assert tm.grid == spec.grid_10s
    assert tm.tokens.shape == (2, t * f, bb.encoder.embed_dim) and tm.tokens.dtype == torch.float32
    assert torch.isfinite(tm.tokens).all()
    assert (tm.cls is not None) == spec.has_cls
    if tm.cls is not None:
        assert tm.cls.shape == (2, bb.encoder.embed_dim)
    # 1 s (98 fbank / 101 mel frames) fills the first rows only. Encoders that hide padding
    # count whole patches (upstream's strided conv floors: BEATs 10 s = 62 rows, Dasheng 250);
    # the others every row with a real frame (Audio-MAE/EAT 10 s = 63 rows of 64)
    pf = bb.encoder.patch_frames
    rnd = (lambda n: n // pf) if bb.encoder.masks_padding else (lambda n: -(-n // pf))
    rows_10s = rnd(bb.frontend.num_frames(160_000))
    rows_1s = rnd(bb.frontend.num_frames(16_000))
    assert rows_10s == {"beats": 62, "beats_plus": 62, "dasheng": 250}.get(name, 63)
    pad = tm.padding_mask.reshape(2, t, f)
    assert (pad[0, :rows_10s] == 0).all() and (pad[0, rows_10s:] == 1).all()
    assert (pad[1, :rows_1s] == 0).all() and (pad[1, rows_1s:] == 1).all()
    assert 0 < rows_1s < rows_10s <= t


@pytest.mark.parametrize("name", NAMES)
def test_frozen_eval_and_deterministic(name: str, clips: torch.Tensor) -> None:
    bb = tiny(name, seed=3)
    assert not bb.training and not any(p.requires_grad for p in bb.parameters())
    bb.train()
    assert not bb.training and not any(m.training for m in bb.modules())
    assert bb.weights_id == "random-tiny-seed3"
    a = bb.embed(clips[:1], 16_000).tokens
    b = tiny(name, seed=3).embed(clips[:1], 16_000).tokens
    c = tiny(name, seed=4).embed(clips[:1], 16_000).tokens
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not a.requires_grad


@pytest.mark.parametrize("name", NAMES)
def test_long_clip_is_chunked_and_concatenated_in_time(name: str) -> None:
    bb = tiny(name)
    w = bb.spec.frontend.chunk_frames
    g = torch.Generator().manual_seed(1)
    wave = 0.1 * torch.randn(1, 16_000 * 25, generator=g)  # 25 s -> 3 windows (ASiT: 5)
    tm = bb.embed(wave, 16_000)
    t, f = w // bb.encoder.patch_frames, bb.encoder.grid_freq
    k = -(-bb.frontend.num_frames(16_000 * 25) // w)
    assert k == (5 if name == "asit" else 3) and tm.grid == (k * t, f)
    # the first window equals that of a clip holding just enough samples for its frames
    first = bb.embed(wave[:, : 160 * (w - 1) + 400], 16_000)
    assert torch.allclose(tm.tokens[:, : t * f], first.tokens[:, : t * f], atol=1e-4)
    assert not tm.padding_mask[0, : (k - 1) * t * f].any() and tm.padding_mask[0, -f:].all()


@pytest.mark.parametrize("name", NAMES)
def test_any_sample_rate_is_resampled(name: str) -> None:
    bb = tiny(name)
    wave = 0.1 * torch.randn(1, 32_000 * 2, generator=torch.Generator().manual_seed(2))
    tm32 = bb.embed(wave, 32_000)
    tm16 = bb.embed(wave, 16_000)  # same samples read as 4 s at 16 kHz
    one_window = (bb.spec.frontend.chunk_frames // bb.encoder.patch_frames, bb.encoder.grid_freq)
    assert tm32.grid == tm16.grid == one_window
    assert tm32.padding_mask.sum() > tm16.padding_mask.sum()


@pytest.mark.parametrize("name", NAMES)
def test_layer_selection(name: str, clips: torch.Tensor) -> None:
    bb = tiny(name)
    last = bb.embed(clips[:1], 16_000, layer=-1).tokens
    assert torch.equal(last, bb.embed(clips[:1], 16_000, layer=bb.encoder.depth - 1).tokens)
    assert not torch.allclose(last, bb.embed(clips[:1], 16_000, layer=0).tokens)
    with pytest.raises(ValueError, match="out of range"):
        bb.embed(clips[:1], 16_000, layer=bb.encoder.depth)


@pytest.mark.parametrize("name", NAMES)
def test_bad_lengths_are_refused(name: str, clips: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="lengths must be"):
        tiny(name).embed(clips, 16_000, lengths=torch.tensor([0, 160_001]))
