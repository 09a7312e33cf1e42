"""Architecture details that distinguish the encoders, checked against the upstream algorithms
written out literally (microsoft/unilm beats/backbone.py, data2vec 2.0 AltBlock, MAE sin-cos)."""

from __future__ import annotations

import math

import pytest
import torch

from backbones import create_backbone
from backbones.beats import RelPosAttention, relative_bucket
from backbones.vit import AltBlock, sincos_2d


def upstream_bucket(rel: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    num_buckets //= 2
    out = (rel > 0).long() * num_buckets
    rel = rel.abs()
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(rel.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return out + torch.where(rel < max_exact, rel, large)


def test_relative_buckets_match_upstream() -> None:
    pos = torch.arange(600)
    rel = pos[None, :] - pos[:, None]
    assert torch.equal(relative_bucket(rel, 320, 800), upstream_bucket(rel, 320, 800))


def test_beats_attention_matches_upstream_formula() -> None:
    torch.manual_seed(0)
    b, n, d, h = 2, 24, 32, 4
    attn = RelPosAttention(d, h, 320, 800)
    torch.nn.init.normal_(attn.grep_a, 1.0, 0.3)
    x = torch.randn(b, n, d)
    pad = torch.zeros(b, n, dtype=torch.bool)
    pad[1, 17:] = True
    bias = attn.position_bias(n)
    ours = attn(x, bias, pad)
    # upstream: q *= scaling / 32; w = (qk - max) * 32; -inf keys; + gate * bias; softmax
    hd = d // h
    scaling, alpha = hd**-0.5, 32
    q = attn.q_proj(x).view(b, n, h, hd).transpose(1, 2) * scaling / alpha
    k = attn.k_proj(x).view(b, n, h, hd).transpose(1, 2)
    v = attn.v_proj(x).view(b, n, h, hd).transpose(1, 2)
    w = q @ k.transpose(-1, -2)
    w = (w - w.max(dim=-1, keepdim=True)[0]) * alpha
    w = w.masked_fill(pad[:, None, None, :], float("-inf"))
    ql = q * alpha / scaling
    ga, gb = torch.sigmoid(attn.grep_linear(ql).view(b, h, n, 2, 4).sum(-1)).chunk(2, dim=-1)
    w = w + (ga * (gb * attn.grep_a - 1.0) + 2.0) * bias[None]
    ref = attn.out_proj((w.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d))
    assert torch.allclose(ours, ref, atol=1e-5)


def test_eat_block_is_post_norm() -> None:
    torch.manual_seed(0)
    blk = AltBlock(16, 2, 4.0)
    x = torch.randn(2, 5, 16)
    r = blk.norm1(x + blk.attn(x))
    assert torch.allclose(blk(x), blk.norm2(r + blk.mlp(r)), atol=1e-6)


def test_audiomae_pos_embed_keeps_the_upstream_8x64_quirk() -> None:
    table = sincos_2d(768, 8, 64, cls_token=True)[0]
    assert table.shape == (513, 768) and torch.all(table[0] == 0)
    # row 1 + i encodes (i mod 64) in dims 0..383 and (i div 64) in dims 384..767
    assert torch.allclose(table[1 + 70, :384], table[1 + 6, :384])
    assert torch.allclose(table[1 + 70, 384:], table[1 + 64, 384:])
    bb = create_backbone("audiomae", checkpoint="random", size="tiny")
    assert torch.equal(bb.encoder.pos_embed, sincos_2d(64, 8, 64, cls_token=True))


def test_eat_positions_encode_frequency_then_time() -> None:
    table = sincos_2d(768, 768, 8)[0]
    assert table.shape == (6144, 768)
    assert torch.allclose(table[8 * 5 + 3, :384], table[3, :384])  # freq = i mod 8
    assert torch.allclose(table[8 * 5 + 3, 384:], table[8 * 5, 384:])  # time = i div 8


@pytest.mark.parametrize("name", ["beats", "dasheng"])
def test_padding_is_invisible_to_real_tokens(name: str) -> None:
    """BEATs and Dasheng hide padded rows: a padded clip's real tokens equal the un-padded
    clip's when the clip fills whole patch rows."""
    bb = create_backbone(name, checkpoint="random", size="tiny")
    w = 0.1 * torch.randn(1, 80_000, generator=torch.Generator().manual_seed(0))
    feats, frames = bb.features(w, 16_000)
    pf = bb.encoder.patch_frames
    real = int(frames[0]) // pf * pf
    enc = bb.encoder
    rows = feats.shape[1] // pf
    full = torch.tensor([real // pf])
    tokens, _ = enc.forward_features(feats, full, enc.depth - 1)
    alone, _ = enc.forward_features(feats[:, :real], torch.tensor([real // pf]), enc.depth - 1)
    n = (real // pf) * enc.grid_freq
    assert rows * enc.grid_freq > n
    assert torch.allclose(tokens[:, :n], alone, atol=1e-4)


@pytest.mark.parametrize("name", ["beats", "dasheng"])
def test_partial_patches_are_padding_except_in_a_clip_shorter_than_one_patch(name: str) -> None:
    bb = create_backbone(name, checkpoint="random", size="tiny")
    pf, f, w = bb.encoder.patch_frames, bb.encoder.grid_freq, bb.spec.frontend.chunk_frames

    def samples(frames: int) -> int:  # kaldi fbank (25 ms / 10 ms) or centred STFT (hop 160)
        return 400 + 160 * (frames - 1) if name == "beats" else 160 * (frames - 1)

    g = torch.Generator().manual_seed(3)
    short = bb.embed(0.1 * torch.randn(1, samples(pf - 1), generator=g), 16_000)
    assert int((~short.padding_mask).sum()) == f  # upstream: no token; here its one row
    over = bb.embed(0.1 * torch.randn(1, samples(w + pf - 1), generator=g), 16_000)
    assert over.grid[0] == 2 * (w // pf)  # the partial patch opens a second window ...
    assert int((~over.padding_mask).sum()) == (w // pf) * f  # ... that holds no real token
    assert torch.isfinite(over.tokens).all()


def test_asit_position_table_is_never_resized(tmp_path) -> None:
    """Official ASiT (Sara-Ahmed/ASiT vision_transformer.py prepare_tokens) adds pos_embed as
    stored: the window is the table's grid (37 x 8 = 592 frames by default)."""
    import backbone_ckpt_files as files

    from backbones import CheckpointError

    bb = create_backbone("asit", checkpoint="random", size="tiny")
    assert bb.encoder.pos_embed.shape == (1, 1 + 37 * 8, 64)
    assert bb.spec.frontend.chunk_frames == 592
    assert torch.equal(bb.encoder.patch_pos(37, 8), bb.encoder.pos_embed[:, 1:])
    assert bb.embed(torch.zeros(1, 16_000), 16_000).grid == (37, 8)
    assert bb.embed(torch.zeros(1, 160_000), 16_000).grid == (74, 8)  # 998 frames: 2 windows
    # a file whose table was made for 1024 frames loads with chunk_frames=1024 only
    big = create_backbone("asit", checkpoint="random", size="tiny", chunk_frames=1024)
    assert big.encoder.pos_embed.shape == (1, 1 + 64 * 8, 64)
    path = files.write(files.asit(big), tmp_path / "asit1024.pth")
    with pytest.raises(CheckpointError, match="chunk_frames=1024"):
        create_backbone("asit", path, size="tiny")
    loaded = create_backbone("asit", path, size="tiny", chunk_frames=1024)
    assert torch.equal(loaded.encoder.pos_embed, big.encoder.pos_embed)


OFFICIAL_BASE = {  # encoder keys and shapes of the official base models (shared/ENCODERS.md)
    "audiomae": (150, {"pos_embed": (1, 513, 768), "blocks.11.attn.qkv.weight": (2304, 768)}),
    "asit": (150, {"pos_embed": (1, 297, 768), "patch_embed.proj.weight": (768, 1, 16, 16)}),
    "beats": (250, {"encoder.pos_conv.0.weight_v": (768, 48, 128),
                    "encoder.pos_conv.0.weight_g": (1, 1, 128),
                    "encoder.layers.11.self_attn.relative_attention_bias.weight": (320, 12),
                    "encoder.layers.0.self_attn.grep_linear.weight": (8, 64),
                    "patch_embedding.weight": (512, 1, 16, 16)}),
    "dasheng": (155, {"time_pos_embed": (1, 768, 1, 252), "init_bn.1.running_var": (64,),
                      "patch_embed.proj.weight": (768, 1, 64, 4)}),  # + 2 front_end buffers
    "eat": (150, {"pos_embed": (1, 512, 768), "blocks.0.mlp.fc1.weight": (3072, 768)}),
}


@pytest.mark.parametrize("family", sorted(OFFICIAL_BASE))
def test_base_models_have_the_official_key_count_and_shapes(family: str) -> None:
    from backbones.base import BASE
    from backbones.factory import build_encoder
    from backbones.zoo import BACKBONES

    spec = next(e.spec for _, e in BACKBONES.items() if e.family == family)
    with torch.device("meta"):
        enc = build_encoder(family, BASE, spec)
    sd = enc.state_dict()
    count, shapes = OFFICIAL_BASE[family]
    assert len(sd) == count
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
