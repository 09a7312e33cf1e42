"""Source text of user encoder files written into test folders (outside the package).

``TinyBands``: 10 ms frames split into two frequency bands, one token each, time-major grid
``(T, 2)``; the broken variants each break one rule of the contract.
"""

from __future__ import annotations

SOURCE = '''
import torch
from torch import nn
from backbones.spec import TokenMap


class TinyBands(nn.Module):
    """A user encoder: 10 ms frames, two bands, one token per (frame, band)."""

    sample_rate = 16000
    embed_dim = 8
    name = "tinybands"
    order = "time"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.proj = nn.Parameter(torch.randn(80, self.embed_dim, generator=g) / 9)
        self.requires_grad_(False)

    def tokens(self, wave, lengths):
        b, s = wave.shape
        t = s // 160
        x = wave[:, : t * 160].reshape(b, t, 2, 80) @ self.proj      # [B, T, F, D]
        if self.order == "freq":
            x = x.transpose(1, 2)                                    # [B, F, T, D]
        real = torch.div(lengths, 160, rounding_mode="floor")
        pad = torch.arange(t)[None, :] >= real[:, None]
        return x.reshape(b, t * 2, -1), pad.repeat_interleave(2, dim=1), t

    def embed(self, wave, lengths):
        tokens, pad, t = self.tokens(wave, lengths)
        return TokenMap(tokens=tokens, cls=None, padding_mask=pad, grid=(t, 2))


class FreqMajor(TinyBands):
    order = "freq"


class Trainable(TinyBands):
    def __init__(self) -> None:
        super().__init__()
        self.requires_grad_(True)


class Leaky(TinyBands):
    def embed(self, wave, lengths):
        wave = wave / wave.abs().mean(1, keepdim=True)  # normalised over the padding too
        tokens, pad, t = self.tokens(wave, lengths)
        return TokenMap(tokens=tokens, cls=None, padding_mask=pad, grid=(t, 2))


def make_tinybands():
    return TinyBands(seed=1)
'''

HEAR_SOURCE = '''
"""A HEAR 2021 API module: 20 ms frames, mean |x| and energy features projected to 6 dims."""
import torch
from torch import nn

__version__ = "0.1"


class _Model(nn.Module):
    sample_rate = 16000
    scene_embedding_size = 6
    timestamp_embedding_size = 6

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w = nn.Parameter(torch.randn(320, 6, generator=g) / 18, requires_grad=False)


def load_model(model_file_path=""):
    return _Model()


def get_timestamp_embeddings(audio, model):
    n, s = audio.shape
    t = s // 320
    emb = audio[:, : t * 320].reshape(n, t, 320) @ model.w
    stamps = (torch.arange(t) * 20.0 + 10.0).expand(n, t)
    return emb, stamps


def get_scene_embeddings(audio, model):
    emb, _ = get_timestamp_embeddings(audio, model)
    return emb.mean(1)
'''
